package bench

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobfleet/jobfleet/pkg/awstest"
	"github.com/jobfleet/jobfleet/pkg/client"
	"github.com/jobfleet/jobfleet/pkg/config"
	"github.com/jobfleet/jobfleet/pkg/job"
	"github.com/jobfleet/jobfleet/pkg/jobstore/dynamojobstore/dynamometer"
	"github.com/jobfleet/jobfleet/pkg/profile"
)

// footprintBuilds are the builds the footprint scenario measures, each on
// a profile it holds: the default (both profiles) on each; the local
// profile alone on the local profile; on the aws profile, against the
// bench's AWS endpoint, the aws profile alone, and the image for ECS,
// which also loads the AWS configuration without the SDK's config package
// (see packages profile, Slim binaries, and awsconfig, The ECS build).
var footprintBuilds = []struct{ name, tags, profile string }{
	{"default", "", config.ProfileLocal},
	{"-tags jobfleet_noaws", "jobfleet_noaws", config.ProfileLocal},
	{"default", "", config.ProfileAWS},
	{"-tags jobfleet_nolocal", "jobfleet_nolocal", config.ProfileAWS},
	{"-tags jobfleet_nolocal,jobfleet_ecs", "jobfleet_nolocal,jobfleet_ecs", config.ProfileAWS},
}

func TestFootprint(t *testing.T) {
	p := sizes(t)
	parallel(t, p)
	tb := newTable(5, "5. Footprint: idle processes and binaries",
		"profile", "build", "process", "RSS idle (median)", "of which anonymous / file", "RSS idle (max)", "peak RSS (VmHWM)", "binary")
	idle := make([]int64, len(footprintBuilds)) // the worker's, kB
	for b, build := range footprintBuilds {
		t.Run(build.profile+"/"+build.tags, func(t *testing.T) {
			bin := binaries(t, build.tags)
			if build.profile == config.ProfileAWS {
				idle[b] = footprintAWS(t, p, bin, build.name, tb)
			} else {
				idle[b] = footprint(t, p, bin, build.name, tb)
			}
		})
	}
	tb.note("After %d echo jobs (one worker), the processes idle for %s, then VmRSS is sampled 10 times over %s from /proc/<pid>/status. "+
		"Anonymous memory is the Go heap and runtime, SQLite's page caches and the like; file memory is mostly the binary's pages in use. "+
		"Binaries built as the container image builds them (static, -trimpath -ldflags=\"-s -w\"). "+
		"The default build holds both profiles; -tags jobfleet_noaws leaves out the AWS SDK (the local profile only), "+
		"-tags jobfleet_nolocal leaves out SQLite (the aws profile only), and jobfleet_ecs the SDK's config package "+
		"(configuration from the environment and the task role only, without shared config files, SSO or STS): the image for ECS. "+
		"On the aws profile the worker and reaper run against the bench's moto server and the jobs are submitted in process; "+
		"the dispatcher is measured on the local profile only (an aws-only one provisions ECS tasks, which the emulator does not run). "+
		"A worker returns the Go heap's free memory to the OS after a second without work (worker.Options.FreeMemoryWhenIdle).",
		p.warmupJobs, p.settle, p.footprintSpan)
	publish(t, tb)
	if t.Failed() {
		return
	}
	// One goal per build: which one a deployment runs is its choice.
	for b, build := range footprintBuilds {
		addGoal(goal{rank: 5, what: "idle worker RSS (" + build.profile + " profile, " + build.name + " build)", target: "≤ 20 MB",
			measured: fmt.Sprintf("%s (%.1f MB)", mib(idle[b]), float64(idle[b])*1024/1e6), met: idle[b]*1024 <= 20e6})
	}
}

// footprint runs a local-profile system of the binaries in bin, adds its
// processes' rows to tb and returns the idle worker's median RSS in kB.
func footprint(t *testing.T, p params, bin, build string, tb *table) int64 {
	s := startSystemFrom(t, bin, env{"JOBFLEET_MIN_WORKERS": "1", "JOBFLEET_MAX_WORKERS": "1", "JOBFLEET_IDLE_TIMEOUT": "0"})
	defer s.stop()

	// Warm up: every process has done its part for a few jobs.
	subs := make([]job.Submission, p.warmupJobs)
	for i := range subs {
		subs[i] = job.Submission{Type: "echo", Payload: json.RawMessage(fmt.Sprintf(`{"n":%d}`, i))}
	}
	res, err := s.client.SubmitBatch(t.Context(), subs)
	require.NoError(t, err)
	for _, r := range res {
		require.NotNil(t, r.Job, "%+v", r)
		j := poll(t, s, r.Job.ID, time.Minute, func(j *client.Job) bool { return j.Status.Terminal() })
		require.Equal(t, job.Succeeded, j.Status)
	}
	workers := s.workerPIDs()
	require.Len(t, workers, 1)
	return idleRows(t, p, config.ProfileLocal, build, bin, tb, []idleProc{
		{"worker", workers[0]},
		{"dispatcher", s.disp.cmd.Process.Pid},
		{"reaper", s.reaper.cmd.Process.Pid},
	})
}

// footprintAWS runs the worker and the reaper of the binaries in bin on the
// aws profile against the bench's moto server (awstest), with resources of
// their own, warms them up with jobs submitted in process, adds their rows to tb
// and returns the idle worker's median RSS in kB.
func footprintAWS(t *testing.T, p params, bin, build string, tb *table) int64 {
	ctx := t.Context()
	settings := env{
		"JOBFLEET_PROFILE": config.ProfileAWS, "JOBFLEET_FLEET": config.FleetLocal,
		"JOBFLEET_RESOURCE_PREFIX": "bench-" + randomHex(4), "JOBFLEET_RESEND_AFTER": "1h",
		"JOBFLEET_IDLE_TIMEOUT": "0",
	}
	cfg, err := config.Load(settings.get)
	require.NoError(t, err)
	require.NoError(t, profile.BootstrapAWS(ctx, cfg, profile.NewClients(awstest.Config(t)), slog.New(slog.DiscardHandler)))
	svc := newService(openAWSRole(t, cfg, dynamometer.New(1), nil).b, cfg)

	if awstest.IsMoto(t) {
		maps.Copy(settings, env{"AWS_ENDPOINT_URL": awstest.Endpoint(t), "AWS_REGION": awstest.Region,
			"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"})
	} else { // the caller's endpoint, credentials and region
		for _, kv := range os.Environ() {
			if k, v, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "AWS_") {
				settings[k] = v
			}
		}
	}
	s := newSystem(t, bin, settings)
	defer s.stop() // the worker too: its environment names the system's data directory
	s.reaper = s.spawn(bin, "reaper")
	w := s.spawn(bin, "worker")
	defer func() {
		if t.Failed() {
			t.Logf("worker output:\n%s", w.output())
		}
	}()
	s.reaper.wait(t, "reaper ready", 30*time.Second)
	w.wait(t, "worker ready", 30*time.Second)

	reqs := echoRequests(p.warmupJobs)
	var ids []string
	for lo := 0; lo < len(reqs); lo += 100 {
		res, err := svc.Submit(ctx, reqs[lo:min(lo+100, len(reqs))]...)
		require.NoError(t, err)
		for _, r := range res {
			require.NoError(t, r.Err)
			ids = append(ids, r.Job.ID)
		}
	}
	store := svc.Store()
	for _, id := range ids {
		require.Eventually(t, func() bool {
			j, err := store.Get(ctx, id)
			require.NoError(t, err)
			require.False(t, j.Status.Terminal() && j.Status != job.Succeeded, "job %s: %s", id, j.Status)
			return j.Status == job.Succeeded
		}, 2*time.Minute, 20*time.Millisecond, "job %s did not succeed", id)
	}
	return idleRows(t, p, config.ProfileAWS, build, bin, tb, []idleProc{
		{"worker", w.cmd.Process.Pid},
		{"reaper", s.reaper.cmd.Process.Pid},
	})
}

// idleProc is a process whose idle footprint is measured.
type idleProc struct {
	name string
	pid  int
}

// idleRows lets procs settle, samples their resident sets, adds a row per
// process to tb and returns the first one's median RSS in kB.
func idleRows(t *testing.T, p params, prof, build, bin string, tb *table, procs []idleProc) int64 {
	// Idle: let the processes settle (a worker returns free memory to the
	// OS after a second without work), then sample each one's resident set
	// over the span.
	time.Sleep(p.settle)
	samples := make([][]int64, len(procs)) // kB
	tick := time.NewTicker(p.footprintSpan / 10)
	defer tick.Stop()
	for range 10 {
		<-tick.C
		for i, pr := range procs {
			samples[i] = append(samples[i], statusKB(t, pr.pid, "VmRSS"))
		}
	}
	for i, pr := range procs {
		fi, err := os.Stat(filepath.Join(bin, "jobfleet-"+pr.name))
		require.NoError(t, err)
		split := mib(statusKB(t, pr.pid, "RssAnon")) + " / " + mib(statusKB(t, pr.pid, "RssFile"))
		tb.add(prof, build, pr.name, mib(quantile(samples[i], 0.5)), split, mib(slices.Max(samples[i])), mib(statusKB(t, pr.pid, "VmHWM")),
			fmt.Sprintf("%.1f MiB", float64(fi.Size())/(1<<20)))
	}
	return quantile(samples[0], 0.5)
}

// statusKB reads a kB field of /proc/<pid>/status.
func statusKB(t *testing.T, pid int, field string) int64 {
	t.Helper()
	st, err := procStatus(pid)
	require.NoError(t, err)
	v, ok := st[field]
	require.True(t, ok, "no %s in /proc/%d/status", field, pid)
	n, err := strconv.ParseInt(strings.TrimSuffix(v, " kB"), 10, 64)
	require.NoError(t, err)
	return n
}
