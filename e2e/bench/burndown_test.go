package bench

import (
	"fmt"
	"os"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/jobfleet/jobfleet/pkg/config"
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

func TestBurnDown(t *testing.T) {
	p := sizes(t)
	parallel(t, p)
	tb := newTable(1, fmt.Sprintf("1. Burn-down: %d no-op jobs, local profile", p.burnJobs),
		"workers × concurrency", "handles", "submit jobs/s", "ceiling", "of ceiling",
		"drain jobs/s", "ceiling", "of ceiling", "batched ceiling")
	best := 0.0
	for _, c := range p.burnConfigs {
		// Inserts take about a second: the median of a few, alternated,
		// evens out the noise. The last of each is drained.
		var ins, ceilIns dist
		var run *burnRun
		var ceil *ceilingRun
		for range p.burnRepeats {
			var d time.Duration
			ceil, d = ceilingInsert(t, p, ceilingMode{})
			ceilIns = append(ceilIns, d)
			run, d = burnInsert(t, p)
			ins = append(ins, d)
		}
		ceilDrain := ceil.drain(t, c)
		drain := run.drain(t, c, p)
		batched, _ := ceilingInsert(t, p, ceilingMode{batched: true})
		batchedDrain := batched.drain(t, c)

		jobsPerSec := rate(p.burnJobs, drain)
		best = max(best, jobsPerSec)
		name := fmt.Sprintf("%d × %d", c.workers, c.conc)
		if c.profiled && *flagProfile != "" {
			name += " (profiled)"
		}
		tb.add(name, c.handles(),
			fmt.Sprintf("%.0f", rate(p.burnJobs, ins.pct(0.5))), fmt.Sprintf("%.0f", rate(p.burnJobs, ceilIns.pct(0.5))),
			fmt.Sprintf("%.0f%%", 100*ceilIns.pct(0.5).Seconds()/ins.pct(0.5).Seconds()),
			fmt.Sprintf("%.0f", jobsPerSec), fmt.Sprintf("%.0f", rate(p.burnJobs, ceilDrain)),
			fmt.Sprintf("%.0f%%", 100*ceilDrain.Seconds()/drain.Seconds()),
			fmt.Sprintf("%.0f", rate(p.burnJobs, batchedDrain)))
		t.Logf("%d×%d %s: inserts %v (ceiling %v), drain %s (ceiling %s, batched %s)", c.workers, c.conc, c.handles(),
			ins, ceilIns, drain, ceilDrain, batchedDrain)
		if c.profiled {
			var parts []string
			for _, m := range []struct {
				what string
				mode ceilingMode
			}{
				{"synchronous=NORMAL (a commit does not wait for the disk; not durable across power loss)", ceilingMode{batched: true, noSync: true}},
				{"and without the receive's dead-letter scan", ceilingMode{batched: true, noSync: true, noDeadScan: true}},
			} {
				r, _ := ceilingInsert(t, p, m.mode)
				parts = append(parts, fmt.Sprintf("%s: %.0f jobs/s", m.what, rate(p.burnJobs, r.drain(t, c))))
			}
			tb.note("What the storage work allows beyond batching, for the %d × %d row: the batched ceiling with %s.",
				c.workers, c.conc, strings.Join(parts, "; "))
		}
	}
	var singles dist
	for range p.burnRepeats {
		singles = append(singles, singleSubmits(t, p, singleProducers))
	}
	tb.note("Single submits: %d jobs, one per dispatcher.Service.Submit call, from %d concurrent producers, as an HTTP API under load sees them "+
		"(concurrent calls share their create transactions and sends, see package dispatcher): %.0f jobs/s, the median of %d runs.",
		p.burnJobs, singleProducers, rate(p.burnJobs, singles.pct(0.5)), p.burnRepeats)
	tb.note("Submit: dispatcher.Service.Submit in batches of %d (one create transaction per 100 jobs, one send per 10 messages); "+
		"the median of %d runs, alternated with the ceiling's. "+
		"Drain: from starting the workers until the last SUCCEEDED write returned. "+
		"Ceiling: the same SQLite transactions, batched the same way, with no protocol logic (see the package doc), on a fresh data directory in the same run; "+
		"\"of ceiling\" is jobs/s as a fraction of the ceiling's. "+
		"Batched ceiling: the same, but the finishes of one receive's jobs commit in one transaction and their deletes in another (group commit), "+
		"what batching finishes across concurrent jobs would allow.", p.burnBatch, p.burnRepeats)
	publish(t, tb)
	addGoal(goal{rank: 1, what: "burn-down (best row)", target: "≥ 10,000 jobs/s (stretch 20,000)",
		measured: fmt.Sprintf("%.0f jobs/s", best), met: best >= 10000})
}

// singleProducers is how many producers submit one job per call at once.
const singleProducers = 32

// singleSubmits submits p.burnJobs no-op jobs to a fresh data directory,
// one per Submit call, from producers concurrent callers.
func singleSubmits(t *testing.T, p params, producers int) time.Duration {
	t.Helper()
	cfg := localConfig(t, t.TempDir(), nil)
	svc := newService(openLocal(t, cfg, nil), cfg)
	reqs := echoRequests(p.burnJobs)
	var next atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	for range producers {
		wg.Go(func() {
			for i := next.Add(1) - 1; i < int64(len(reqs)); i = next.Add(1) - 1 {
				res, err := svc.Submit(t.Context(), reqs[i])
				if assert.NoError(t, err) {
					assert.True(t, res[0].Created, "%v", res[0].Err)
				}
			}
		})
	}
	wg.Wait()
	return time.Since(start)
}

// burnRun is a data directory with submitted jobs in it.
type burnRun struct {
	cfg config.Config
}

// burnInsert submits p.burnJobs no-op jobs to a fresh data directory.
func burnInsert(t *testing.T, p params) (*burnRun, time.Duration) {
	t.Helper()
	cfg := localConfig(t, t.TempDir(), nil)
	svc := newService(openLocal(t, cfg, nil), cfg)
	reqs := echoRequests(p.burnJobs)
	start := time.Now()
	submitAll(t, svc, reqs, p.burnBatch)
	return &burnRun{cfg: cfg}, time.Since(start)
}

// drain drains the run's jobs with the real worker core.
func (r *burnRun) drain(t *testing.T, c burnConfig, p params) time.Duration {
	t.Helper()
	done := newMarks()
	reg := worker.NewRegistry()
	handlers.Register(reg, handlers.Options{})
	workers := make([]*worker.Worker, c.workers)
	var shared *profile.Backends
	for i := range workers {
		b := shared
		if b == nil {
			b = openLocal(t, r.cfg, done)
		}
		if c.shared {
			shared = b
		}
		workers[i] = newWorker(t, b, fmt.Sprintf("bench/%d", i+1), reg, r.cfg, c.conc)
	}
	stopProfile := startProfile(t, c.profiled)
	start := time.Now()
	for _, w := range workers {
		require.NoError(t, w.Start(t.Context()))
	}
	done.await(t, p.burnJobs, 5*time.Minute)
	d := time.Since(start)
	stopProfile()
	stopAll(workers)
	return d
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
