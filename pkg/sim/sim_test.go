package sim_test

import (
	"context"
	"flag"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/jobfleet/jobfleet/pkg/invariant"
	"github.com/jobfleet/jobfleet/pkg/job"
	"github.com/jobfleet/jobfleet/pkg/metrics"
	"github.com/jobfleet/jobfleet/pkg/sim"
)

// defaultSeeds is tuned so that the package takes under 90 s under -race
// on an idle 2-core machine: a seed costs about 30 ms of CPU under -race
// (9 ms without), so TestSimulation takes about 60 s of CPU, some 35 s of
// wall time when it has both cores; it measured 96 s wall while the
// machine was busy with other work (load average 7). See the package doc
// for a longer run.
const defaultSeeds = 2000

var (
	seedFlag  = flag.Uint64("seed", 0, "run only this seed (replay a failure)")
	seedsFlag = flag.Int("seeds", defaultSeeds, "how many seeds TestSimulation runs")
	firstFlag = flag.Uint64("first", 1, "the first seed TestSimulation runs")
	traceFlag = flag.Bool("simtrace", false, "print every step of the run (with -seed)")
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// shared metrics: the runs' components record into one set.
var shared = metrics.New()

func replay(seed uint64) string {
	return fmt.Sprintf("go test ./sim -run 'TestSimulation$' -seed=%d -v -simtrace", seed)
}

// TestSimulation runs many seeds (or one, with -seed) and fails on any
// broken invariant, printing the command that replays the seed. Over many
// seeds it also requires every protocol step to have happened and every
// kind of fault to have been injected, so that a change which quietly
// stops exercising one fails here.
func TestSimulation(t *testing.T) {
	t.Parallel()
	if *seedFlag != 0 {
		cfg := &sim.Config{Metrics: shared}
		if *traceFlag {
			cfg.Trace = t.Output()
		}
		res, err := sim.Run(t.Context(), *seedFlag, cfg)
		require.NoError(t, err)
		t.Logf("seed %d: %d+%d steps, %s simulated, settled %t\nfaults %+v\nnotes %+v\n%s",
			res.Seed, res.Steps, res.SettleSteps, res.SimTime.Round(time.Second), res.Settled, res.Faults, res.Notes, res.Report.String())
		if err := res.Err(); err != nil {
			t.Fatalf("seed %d: %v\n%s\nreplay: %s", res.Seed, err, res.Report.String(), replay(res.Seed))
		}
		return
	}

	n := *seedsFlag
	shards := max(runtime.GOMAXPROCS(0), 1)
	var mu sync.Mutex
	sum := newSummary()
	start := time.Now()
	t.Run("seeds", func(t *testing.T) {
		for s := range shards {
			t.Run(fmt.Sprint(s), func(t *testing.T) {
				t.Parallel()
				local := newSummary()
				for i := s; i < n; i += shards {
					seed := *firstFlag + uint64(i)
					res, err := sim.Run(t.Context(), seed, &sim.Config{Metrics: shared})
					require.NoError(t, err)
					local.add(res)
					if err := res.Err(); err != nil {
						t.Errorf("seed %d: %v\n%s\nreplay: %s", seed, err, res.Report.String(), replay(seed))
						break // one failing seed per shard is enough to look at
					}
				}
				mu.Lock()
				sum.merge(local)
				mu.Unlock()
			})
		}
	})
	t.Logf("%d seeds in %s: %s", n, time.Since(start).Round(time.Millisecond), sum.String())
	if t.Failed() || n < 500 {
		return
	}
	if sum.notes.Untracked > 0 {
		t.Errorf("in %d seeds, %d runs left their worker's running map while their handler ran", n, sum.notes.Untracked)
	}
	for _, name := range sum.missing() {
		t.Errorf("in %d seeds, never: %s", n, name)
	}
}

// summary aggregates runs.
type summary struct {
	seeds, unsettled, jobs, executions, duplicates, attempts int
	recovery                                                 []time.Duration // each run's p50
	maxRecovery                                              time.Duration
	notes                                                    sim.Notes
	// counts of what happened, by name (writes by event, faults by kind)
	counts map[string]int
}

func newSummary() *summary { return &summary{counts: map[string]int{}} }

func (s *summary) add(r *sim.Result) {
	s.seeds++
	if !r.Settled {
		s.unsettled++
	}
	rep := &r.Report
	s.jobs += rep.Jobs
	s.executions += rep.Executions
	s.duplicates += rep.DuplicateExecutions
	s.attempts += rep.Attempts
	if rep.Recovery.Samples > 0 {
		s.recovery = append(s.recovery, rep.Recovery.P50)
		s.maxRecovery = max(s.maxRecovery, rep.Recovery.Max)
	}
	s.notes.Add(r.Notes)

	acks := map[string]int{}
	for _, e := range r.History {
		switch e.Kind {
		case invariant.Write:
			if e.Accepted {
				s.counts["write "+string(e.Event)]++
			}
		case invariant.Submitted:
			if acks[e.Job]++; acks[e.Job] == 2 {
				s.counts["deduplicated submission"]++
			}
		case invariant.Rejected:
			s.counts["refused submission"]++
		case invariant.DeadLetter:
			s.counts["dead letter"]++
		}
	}
	f := r.Faults
	for name, v := range map[string]int{
		"crash": f.Crashes, "drain": f.Drains, "stall": f.Stalls, "skewed clock": f.Skewed,
		"reaper outage": f.ReaperOutages, "store outage": f.StoreOutages,
		"lost fleet event": f.EventsLost, "duplicated fleet event": f.EventsDuplicated,
		"malformed message": f.MalformedMessages, "bad submission": f.BadSubmission,
		"store unavailable": f.Store.Unavailable, "store entry unavailable": f.Store.EntryUnavailable,
		"store ambiguous write": f.Store.Ambiguous, "store slow call": f.Store.Slow,
		"queue unavailable": f.Queue.Unavailable, "queue lost message": f.Queue.Lost,
		"queue duplicated message": f.Queue.Duplicated, "queue delayed message": f.Queue.Delayed,
		"queue lost delete": f.Queue.DeletesLost, "queue lost visibility change": f.Queue.VisibilityLost,
	} {
		s.counts[name] += v
	}
}

func (s *summary) merge(o *summary) {
	s.seeds += o.seeds
	s.unsettled += o.unsettled
	s.jobs += o.jobs
	s.executions += o.executions
	s.duplicates += o.duplicates
	s.attempts += o.attempts
	s.recovery = append(s.recovery, o.recovery...)
	s.maxRecovery = max(s.maxRecovery, o.maxRecovery)
	s.notes.Add(o.notes)
	for k, v := range o.counts {
		s.counts[k] += v
	}
}

// missing lists the protocol steps and faults that never happened.
func (s *summary) missing() []string {
	want := []string{"deduplicated submission", "refused submission", "dead letter"}
	for _, ev := range []job.Event{job.EventStart, job.EventTakeover, job.EventRenew, job.EventFinish, job.EventReclaim,
		job.EventPromote, job.EventResend, job.EventCancel, job.EventRequestCancel, job.EventDeadLetter, job.EventExpire} {
		want = append(want, "write "+string(ev))
	}
	want = append(want, "crash", "drain", "stall", "skewed clock", "reaper outage", "store outage",
		"lost fleet event", "duplicated fleet event", "malformed message", "bad submission",
		"store unavailable", "store entry unavailable", "store ambiguous write", "store slow call",
		"queue unavailable", "queue lost message", "queue duplicated message", "queue delayed message",
		"queue lost delete", "queue lost visibility change")
	var out []string
	for _, name := range want {
		if s.counts[name] == 0 {
			out = append(out, name)
		}
	}
	return out
}

func (s *summary) String() string {
	per10k := 0.0
	if s.jobs > 0 {
		per10k = float64(s.duplicates) * 10000 / float64(s.jobs)
	}
	var p50 time.Duration
	if len(s.recovery) > 0 {
		d := slices.Clone(s.recovery)
		slices.Sort(d)
		p50 = d[len(d)/2]
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d jobs, %d attempts (%d takeovers), %d successful executions, %d duplicate (%.0f per 10k jobs); ",
		s.jobs, s.attempts, s.counts["write takeover"], s.executions, s.duplicates, per10k)
	fmt.Fprintf(&b, "%d crashes, %d store outages, %d dead-lettered jobs; recovery after a worker's death: median of the runs' p50 %s, max %s; ",
		s.counts["crash"], s.counts["store outage"], s.counts["write dead_letter"], p50.Round(time.Millisecond), s.maxRecovery.Round(time.Millisecond))
	fmt.Fprintf(&b, "notes %+v; %d runs unsettled", s.notes, s.unsettled)
	return b.String()
}

// TestDeterministic: a seed replays exactly.
func TestDeterministic(t *testing.T) {
	t.Parallel()
	for seed := uint64(1); seed <= 4; seed++ {
		a, err := sim.Run(context.Background(), seed, &sim.Config{Metrics: shared})
		require.NoError(t, err)
		b, err := sim.Run(context.Background(), seed, &sim.Config{Metrics: shared})
		require.NoError(t, err)
		require.Equal(t, a.Digest(), b.Digest(), "seed %d", seed)
		require.Equal(t, len(a.History), len(b.History))
		require.Equal(t, a.Faults, b.Faults)
		require.Equal(t, a.Report.String(), b.Report.String())
	}
	a, err := sim.Run(context.Background(), 1, &sim.Config{Metrics: shared})
	require.NoError(t, err)
	b, err := sim.Run(context.Background(), 2, &sim.Config{Metrics: shared})
	require.NoError(t, err)
	require.NotEqual(t, a.Digest(), b.Digest(), "seeds differ")
}

// TestNoFaults: without faults, nothing is executed twice and every job
// ends as its handler said.
func TestNoFaults(t *testing.T) {
	t.Parallel()
	for seed := uint64(1); seed <= 20; seed++ {
		res, err := sim.Run(t.Context(), seed, &sim.Config{Metrics: shared, NoFaults: true})
		require.NoError(t, err)
		require.NoError(t, res.Err(), "seed %d", seed)
		require.False(t, res.Faults.Any(), "seed %d", seed)
		require.True(t, res.Settled, "seed %d", seed)
		require.Equal(t, res.Report.Jobs, res.Report.Terminal, "seed %d", seed)
		require.Zero(t, res.Notes.Untracked, "seed %d", seed)
		require.Zero(t, res.Notes.ExpiredUnderOwner, "seed %d: a lease ran out under a live worker without a fault", seed)
	}
}
