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

func TestFootprint(t *testing.T) {
	p := sizes(t)
	parallel(t, p)
	bin := binaries(t)
	s := startSystem(t, env{"JOBFLEET_MIN_WORKERS": "1", "JOBFLEET_MAX_WORKERS": "1", "JOBFLEET_IDLE_TIMEOUT": "0"})

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

	// Idle: sample each process's resident set over the span.
	samples := make([][]int64, len(procs)) // kB
	tick := time.NewTicker(p.footprintSpan / 10)
	defer tick.Stop()
	for range 10 {
		<-tick.C
		for i, pr := range procs {
			samples[i] = append(samples[i], statusKB(t, pr.pid, "VmRSS"))
		}
	}
	tb := newTable(5, "5. Footprint: idle processes and binaries (local profile)",
		"process", "RSS idle (median)", "of which anonymous / file", "RSS idle (max)", "peak RSS (VmHWM)", "binary")
	for i, pr := range procs {
		fi, err := os.Stat(filepath.Join(bin, "jobfleet-"+pr.name))
		require.NoError(t, err)
		split := mib(statusKB(t, pr.pid, "RssAnon")) + " / " + mib(statusKB(t, pr.pid, "RssFile"))
		tb.add(pr.name, mib(quantile(samples[i], 0.5)), split, mib(slices.Max(samples[i])), mib(statusKB(t, pr.pid, "VmHWM")),
			fmt.Sprintf("%.1f MiB", float64(fi.Size())/(1<<20)))
	}
	tb.note("After %d echo jobs (one worker), the processes idle for %s; VmRSS sampled 10 times from /proc/<pid>/status. "+
		"Anonymous memory is the Go heap and runtime, SQLite's page caches and the like; file memory is mostly the binary's pages in use. "+
		"Binaries as `go build` makes them (with symbols and DWARF; -ldflags=\"-s -w\" would shrink them).", p.warmupJobs, p.footprintSpan)
	publish(t, tb)
	idle := quantile(samples[0], 0.5) // kB
	addGoal(goal{rank: 5, what: "idle worker RSS", target: "≤ 20 MB", measured: mib(idle), met: idle*1024 <= 20e6})
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
