package bench

import (
	"fmt"
	"os"
	"runtime/pprof"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobfleet/jobfleet/pkg/handlers"
	"github.com/jobfleet/jobfleet/pkg/profile"
	"github.com/jobfleet/jobfleet/pkg/worker"
)

// burnConfig is one burn-down row: W workers of concurrency C.
type burnConfig struct {
	workers, conc int
	// shared: the workers share one process's handles (W Worker instances
	// in one process) instead of opening the data directory each.
	shared bool
	// profiled: the drain is CPU-profiled with -drainprofile.
	profiled bool
}

func (c burnConfig) handles() string {
	if c.shared {
		return "one process"
	}
	return "one per worker"
}

// phases are the two timed parts of a burn-down.
type phases struct {
	insert, drain time.Duration
}

func TestBurnDown(t *testing.T) {
	p := sizes(t)
	parallel(t, p)
	tb := newTable(1, fmt.Sprintf("1. Burn-down: %d no-op jobs, local profile", p.burnJobs),
		"workers × concurrency", "handles", "submit jobs/s", "ceiling", "of ceiling",
		"drain jobs/s", "ceiling", "of ceiling")
	best := 0.0
	for _, c := range p.burnConfigs {
		ceil := ceiling(t, c, p)
		got := burnDown(t, c, p)
		drain := rate(p.burnJobs, got.drain)
		best = max(best, drain)
		name := fmt.Sprintf("%d × %d", c.workers, c.conc)
		if c.profiled && *flagProfile != "" {
			name += " (profiled)"
		}
		tb.add(name, c.handles(),
			fmt.Sprintf("%.0f", rate(p.burnJobs, got.insert)), fmt.Sprintf("%.0f", rate(p.burnJobs, ceil.insert)),
			fmt.Sprintf("%.0f%%", 100*ceil.insert.Seconds()/got.insert.Seconds()),
			fmt.Sprintf("%.0f", drain), fmt.Sprintf("%.0f", rate(p.burnJobs, ceil.drain)),
			fmt.Sprintf("%.0f%%", 100*ceil.drain.Seconds()/got.drain.Seconds()))
		t.Logf("%d×%d %s: insert %s (ceiling %s), drain %s (ceiling %s)", c.workers, c.conc, c.handles(),
			got.insert, ceil.insert, got.drain, ceil.drain)
	}
	tb.note("Submit: dispatcher.Service.Submit in batches of %d (one create transaction per 100 jobs, one send per 10 messages). "+
		"Drain: from starting the workers until the last SUCCEEDED write returned. "+
		"Ceiling: the same SQLite transactions, batched the same way, with no protocol logic (see the package doc), on a fresh data directory in the same run; "+
		"\"of ceiling\" is jobs/s as a fraction of the ceiling's.", p.burnBatch)
	publish(t, tb)
	addGoal(goal{rank: 1, what: "burn-down (best row)", target: "≥ 10,000 jobs/s (stretch 20,000)",
		measured: fmt.Sprintf("%.0f jobs/s", best), met: best >= 10000})
}

// burnDown submits p.burnJobs no-op jobs, then drains them with the real
// worker core.
func burnDown(t *testing.T, c burnConfig, p params) phases {
	t.Helper()
	dir := t.TempDir()
	cfg := localConfig(t, dir, nil)
	svc := newService(openLocal(t, cfg, nil), cfg)
	reqs := echoRequests(p.burnJobs)
	start := time.Now()
	submitAll(t, svc, reqs, p.burnBatch)
	insert := time.Since(start)

	done := newMarks()
	reg := worker.NewRegistry()
	handlers.Register(reg, handlers.Options{})
	workers := make([]*worker.Worker, c.workers)
	var shared *profile.Backends
	for i := range workers {
		b := shared
		if b == nil {
			b = openLocal(t, cfg, done)
		}
		if c.shared {
			shared = b
		}
		workers[i] = newWorker(t, b, fmt.Sprintf("bench/%d", i+1), reg, cfg, c.conc)
	}
	stopProfile := startProfile(t, c.profiled)
	start = time.Now()
	for _, w := range workers {
		require.NoError(t, w.Start(t.Context()))
	}
	done.await(t, p.burnJobs, 5*time.Minute)
	drain := time.Since(start)
	stopProfile()
	stopAll(workers)
	return phases{insert: insert, drain: drain}
}

// startProfile starts the CPU profile of a drain when asked for, and
// returns what stops it.
func startProfile(t *testing.T, profiled bool) func() {
	t.Helper()
	if !profiled || *flagProfile == "" {
		return func() {}
	}
	f, err := os.Create(*flagProfile)
	require.NoError(t, err)
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		t.Logf("no drain profile: %v", err) // go test -cpuprofile holds the profiler
		return func() {}
	}
	return func() {
		pprof.StopCPUProfile()
		require.NoError(t, f.Close())
		t.Logf("drain CPU profile in %s", *flagProfile)
	}
}
