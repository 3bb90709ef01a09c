package bench

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobfleet/jobfleet/pkg/client"
	"github.com/jobfleet/jobfleet/pkg/job"
)

// footprintBuilds are the builds the footprint scenario measures: the
// default (both profiles), and the local profile alone (see package
// profile, Slim binaries).
var footprintBuilds = []struct{ name, tags string }{
	{"default", ""},
	{"-tags jobfleet_noaws", "jobfleet_noaws"},
}

func TestFootprint(t *testing.T) {
	p := sizes(t)
	parallel(t, p)
	tb := newTable(5, "5. Footprint: idle processes and binaries (local profile)",
		"build", "process", "RSS idle (median)", "of which anonymous / file", "RSS idle (max)", "peak RSS (VmHWM)", "binary")
	idle := make([]int64, len(footprintBuilds)) // the worker's, kB
	for b, build := range footprintBuilds {
		t.Run(build.tags, func(t *testing.T) {
			idle[b] = footprint(t, p, binaries(t, build.tags), build.name, tb)
		})
	}
	tb.note("After %d echo jobs (one worker), the processes idle for %s, then VmRSS is sampled 10 times over %s from /proc/<pid>/status. "+
		"Anonymous memory is the Go heap and runtime, SQLite's page caches and the like; file memory is mostly the binary's pages in use. "+
		"Binaries built as the container image builds them (static, -trimpath -ldflags=\"-s -w\"). "+
		"The default build holds both profiles; -tags jobfleet_noaws leaves out the AWS SDK (the local profile only), "+
		"as -tags jobfleet_nolocal leaves out SQLite for an aws-only image. "+
		"A worker returns the Go heap's free memory to the OS after a second without work (worker.Options.FreeMemoryWhenIdle).", p.warmupJobs, p.settle, p.footprintSpan)
	publish(t, tb)
	if t.Failed() {
		return
	}
	measured := make([]string, len(footprintBuilds))
	for b, build := range footprintBuilds {
		measured[b] = mib(idle[b]) + " (" + build.name + ")"
	}
	best := slices.Min(idle)
	addGoal(goal{rank: 5, what: "idle worker RSS", target: "≤ 20 MB", measured: strings.Join(measured, ", "), met: best*1024 <= 20e6})
}

// footprint runs a local-profile system of the binaries in bin, adds its
// processes' rows to tb and returns the idle worker's median RSS in kB.
func footprint(t *testing.T, p params, bin, build string, tb *table) int64 {
	s := startSystemFrom(t, bin, env{"JOBFLEET_MIN_WORKERS": "1", "JOBFLEET_MAX_WORKERS": "1", "JOBFLEET_IDLE_TIMEOUT": "0"})

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
	procs := []struct {
		name string
		pid  int
	}{
		{"worker", workers[0]},
		{"dispatcher", s.disp.cmd.Process.Pid},
		{"reaper", s.reaper.cmd.Process.Pid},
	}

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
		tb.add(build, pr.name, mib(quantile(samples[i], 0.5)), split, mib(slices.Max(samples[i])), mib(statusKB(t, pr.pid, "VmHWM")),
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
