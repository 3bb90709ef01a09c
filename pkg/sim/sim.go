// Package sim is a deterministic simulation of the job protocol: a
// dispatcher submitting jobs, workers receiving, starting, heartbeating and
// finishing them, reapers sweeping and following fleet events, and a fleet
// whose workers crash, stall, drain and come back — all over the in-memory
// adapters (memjobstore, memqueue) wrapped with fault injection
// (faultjobstore, faultqueue), on one fake clock, with one seeded scheduler
// (math/rand/v2) picking which actor takes the next step. A run is a pure
// function of its seed: a failing seed replays exactly.
//
// Every run records its history into an invariant.Recorder (writes as the
// store applied them, through invariant.RecordDriver; submissions, handler
// completions, reads, dead letters and worker lifetimes from the actors) and
// ends with invariant.Check. Result.Notes counts what breaks no invariant
// but is worth knowing (see Notes).
//
// # What runs
//
//   - Dispatcher: dispatcher.Service.Submit (the real core) with ids derived
//     from the submission, so a producer's retry after an error is the same
//     job; 20-40 jobs, some keyed (duplicates and key conflicts), some with
//     timeouts shorter than a lease or of a few leases, some delayed, some
//     past the queue's delay limit (SCHEDULED), some with a start deadline
//     (start_within), some invalid (answered with an error). Cancels go through dispatcher.Service.Cancel; a client
//     reads jobs now and then, and every acknowledged job at the end.
//     The dispatcher keeps no state between calls, so its crash is not a
//     fault of its own here: a crash inside Submit looks from outside like
//     the faults below — a create applied with its answer lost, a send lost
//     — followed by the producer's retry with the same id, and those are
//     injected.
//   - Reapers (one, or two racing): reaper.Reaper.Sweep (lease expiry,
//     timeouts, resends, promotions, the work DLQ) every sweep interval,
//     and reaper.Reaper.HandleEvent for fleet STOPPED events. A third of
//     the seeds each fail a dead-lettered never-started job at once, send
//     it again once, and up to the default (reaper.Options.MaxRedrives).
//   - Workers (2-4, 1-4 jobs each): a step-driven model of the worker core
//     (worker.go) that takes its decisions with the core's own functions
//     (pkg/worker's decide.go) and only sequences them: receive, start
//     (with growing give-back delays when the store refuses it), takeover
//     or settle of an expired lease, stale-message deletion,
//     dead-lettering of undecodable messages, the batched heartbeat (renew,
//     cancel requests, lost leases, visibility), the handler's outcomes
//     (success, failure, permanent, snooze, panic, timeout, cancelled,
//     handed back), the fenced finish, the next message, the delete, drain
//     with hand-back; the running map is keyed by run, as pkg/worker has
//     it.
//   - Time: processes act when their timers are due (heartbeats every 10 s,
//     sweeps every 5 s, handlers returning); the clock never jumps past a
//     due timer by more than a moment, so a late heartbeat is a fault
//     (a stall), not an accident of scheduling. Workers long-poll: they
//     receive when a message is visible (memqueue.Broker.NextVisible).
//
// # Faults (active phase, 300 steps)
//
// Each seed draws its own rates (one seed in ten runs without faults; each
// kind is on in about half of the others). Workers crash at any step (local
// state gone, messages back after the visibility timeout, an open long poll
// that takes messages for nobody for up to 20 s, a STOPPED event that
// comes late, twice or never), stall (no step, no heartbeat, for 5-90 s),
// or drain and exit; the fleet replaces them. Worker and reaper clocks are
// skewed, within the lease's margin or beyond it. Reapers go down for a
// while. The store refuses calls, refuses single entries of a batch,
// applies writes and reports an error, is slow (the clock moves while a
// call is on its way), and has outages (every call refused for 5-60 s).
// The work queue loses, duplicates and delays messages, and loses deletes
// and visibility changes; its DLQ takes messages after 3, 5 or 10
// receives. Malformed work messages appear.
//
// Then a quiescent phase: faults off, clocks in sync, no crash, no stall,
// reapers up, the fleet at its size; time jumps from one due thing to the
// next until every stored job is terminal (or a cap is reached, and
// whatever is left counts as lost).
//
// # Running
//
//	go test ./sim                                                  # 2000 seeds (under make test)
//	go test ./sim -run 'TestSimulation$' -seed=12345 -v -simtrace    # replay one seed, printing every step
//	go test ./sim -run 'TestSimulation$' -seeds=50000 -first=1000000 -timeout=1h -v  # a long run
//
// A failing seed prints its replay command. The long run takes about 4
// minutes on a 2-core machine (about a quarter of an hour under -race).
package sim

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"time"

	"github.com/jobfleet/jobfleet/pkg/clock"
	"github.com/jobfleet/jobfleet/pkg/dispatcher"
	"github.com/jobfleet/jobfleet/pkg/fleet"
	"github.com/jobfleet/jobfleet/pkg/invariant"
	"github.com/jobfleet/jobfleet/pkg/job"
	"github.com/jobfleet/jobfleet/pkg/jobstore"
	"github.com/jobfleet/jobfleet/pkg/jobstore/faultjobstore"
	"github.com/jobfleet/jobfleet/pkg/jobstore/memjobstore"
	"github.com/jobfleet/jobfleet/pkg/metrics"
	"github.com/jobfleet/jobfleet/pkg/queue"
	"github.com/jobfleet/jobfleet/pkg/queue/faultqueue"
	"github.com/jobfleet/jobfleet/pkg/queue/memqueue"
	"github.com/jobfleet/jobfleet/pkg/reaper"
)

// Epoch is where every run's clock starts.
var Epoch = time.Date(2030, 6, 1, 12, 0, 0, 0, time.UTC)

// Timing of the simulated services (the services' defaults).
const (
	heartbeat    = 10 * time.Second
	visibility   = 40 * time.Second // lease + heartbeat
	sweepEvery   = 5 * time.Second
	drainTimeout = 25 * time.Second
	retryBase    = time.Second
	retryMax     = time.Hour
)

// Config shapes a run. The zero value lets the seed choose everything.
type Config struct {
	// Jobs is how many submissions the producers make (default: 20-40,
	// drawn from the seed).
	Jobs int
	// Workers is the fleet's target size (default: 2-4).
	Workers int
	// Steps is the length of the active phase (default 300).
	Steps int
	// SettleSteps caps the quiescent phase (default 6000).
	SettleSteps int
	// NoFaults turns fault injection off for the whole run.
	NoFaults bool
	// Trace, when set, receives one line per step.
	Trace io.Writer
	// Metrics is shared by the run's components (default: a new set).
	// Metrics are not part of what a run decides, so runs may share one.
	Metrics *metrics.Metrics
	// WrapStore, when set, wraps the in-memory job store driver (below
	// the recording of writes and the fault injection): a test can give
	// the run a deliberately broken store and require the checker to
	// notice.
	WrapStore func(jobstore.Driver) jobstore.Driver
}

// Result is what a run did and what the checker found.
type Result struct {
	Seed    uint64
	Report  invariant.Report
	History invariant.History
	// Steps and SettleSteps count the steps of the active and of the
	// quiescent phase; Settled reports whether every stored job was
	// terminal before the quiescent phase's cap.
	Steps, SettleSteps int
	Settled            bool
	SimTime            time.Duration // fake time the run covered
	// MaxReceives is how many receives the work queue allows a message
	// before its dead-letter queue (drawn from the seed).
	MaxReceives int
	Faults      FaultStats
	Notes       Notes
}

// Notes counts what a run saw that breaks no invariant but is worth
// knowing about.
type Notes struct {
	// SelfTakeovers: a worker received a message for a job it was running
	// itself, whose lease had expired (it stalled, or its clock is slow),
	// and took it over or settled it.
	SelfTakeovers int
	// Untracked: runs whose handler was still going but which had left
	// their worker's running map when another of its handlers returned:
	// no heartbeat renews them, no drain hands them back. pkg/worker once
	// lost runs this way (its map was keyed by job id, and an old run's
	// return deleted a newer run of the same job); there must be none.
	Untracked int
	// Overlaps: a worker started an attempt of a job while its own run of
	// an earlier attempt was still in its handler (the job was re-queued
	// under it: reclaimed at its deadline, or after its lease ran out).
	// Both runs are tracked until each returns; the old one's next renewal
	// finds its lease lost.
	Overlaps int
	// ExpiredUnderOwner: attempts whose lease ran out while a live worker
	// ran them (they ended as lease_expired, a failure spent): it stalled,
	// its clock was off, or its renewals failed. Without faults there are
	// none: a run the worker stopped renewing would show here.
	ExpiredUnderOwner int
	// GiveBacks: work messages given back after a start the store refused
	// (worker.GiveBackDelay); MaxGiveBackReceives is the highest receive
	// count among them.
	GiveBacks, MaxGiveBackReceives int
}

// Add adds o's counts to n (of MaxGiveBackReceives, it keeps the larger),
// to sum up many runs.
func (n *Notes) Add(o Notes) {
	n.SelfTakeovers += o.SelfTakeovers
	n.Untracked += o.Untracked
	n.Overlaps += o.Overlaps
	n.ExpiredUnderOwner += o.ExpiredUnderOwner
	n.GiveBacks += o.GiveBacks
	n.MaxGiveBackReceives = max(n.MaxGiveBackReceives, o.MaxGiveBackReceives)
}

// FaultStats counts the faults a run injected.
type FaultStats struct {
	Store                            faultjobstore.Stats
	Queue                            faultqueue.Stats
	Crashes, Drains, Stalls, Skewed  int
	ReaperOutages, StoreOutages      int
	LongestStoreOutage               time.Duration
	EventsLost, EventsDuplicated     int
	MalformedMessages, BadSubmission int
}

// Any reports whether any fault was injected.
func (f FaultStats) Any() bool { return f != FaultStats{} }

// Err returns the report's error: nil when every invariant held.
func (r *Result) Err() error { return r.Report.Err() }

// faultRates are a seed's fault probabilities for the active phase.
type faultRates struct {
	store                    faultjobstore.Faults
	queue                    faultqueue.Faults
	crash, drain, stall      float64 // weight per alive worker per step
	reaperDown               float64 // weight per reaper up per step
	storeOutage              float64 // weight per step
	skew                     float64 // chance that a new worker's clock is skewed
	eventLost, eventDup      float64
	eventDelay               time.Duration
	malformed, badSubmission float64
}

// world is one run.
type world struct {
	ctx    context.Context
	seed   uint64
	rnd    *rand.Rand
	clk    *clock.Fake
	rec    *invariant.Recorder
	policy job.Policy
	trace  io.Writer

	store      *jobstore.Store // what the actors use: recorded, with faults
	truth      *jobstore.Store // the sim's own view: no faults, not recorded
	storeFault *faultjobstore.Driver
	broker     *memqueue.Broker
	work       *queue.Queue // with faults
	workFault  *faultqueue.Driver
	dlq        *queue.Queue

	disp    *dispatcher.Service
	reapers []*reaperProc

	rates       faultRates
	maxReceives int // the work queue's, before its DLQ
	faultsOn    bool
	settling    bool
	workers     []*worker
	target      int
	nextID      int
	events      []fleetEvent
	eventSeq    int64

	subs   []*submission
	acked  []string // job ids acknowledged, in order
	ackSet map[string]bool

	acts  []action // reused by once
	stats FaultStats
	notes Notes
	step  int
	// idleRun counts the quiescent phase's steps in a row that changed
	// nothing; past a few, time runs ahead.
	idleRun int
	// storeDownUntil: the store refuses every call until then (an outage).
	storeDownUntil time.Time
	// visible: the work queue has a visible message this step (workers
	// long-poll: a receive returns when one is).
	visible bool
}

// maxRedrives is the reapers' Options.MaxRedrives for seed: none, one or
// the default, by the seed itself (drawing it would change every seed's
// run).
func maxRedrives(seed uint64) int { return []int{-1, 1, 0}[seed%3] }

// fleetEvent is a fleet event on its way to the reaper.
type fleetEvent struct {
	at time.Time
	e  fleet.Event
}

// Run runs the simulation for seed and checks the invariants; it returns
// an error only when the run could not be set up.
func Run(ctx context.Context, seed uint64, cfg *Config) (*Result, error) {
	if cfg == nil {
		cfg = &Config{}
	}
	w, err := newWorld(ctx, seed, cfg)
	if err != nil {
		return nil, err
	}
	defer w.close()
	steps := cmpOr(cfg.Steps, 300)
	for w.step = 0; w.step < steps; w.step++ {
		w.once()
	}
	w.quiesce()
	settle, settled := 0, false
	maxSettle := cmpOr(cfg.SettleSteps, 6000)
	for ; settle < maxSettle; settle++ {
		if settle%20 == 0 && w.allTerminal() {
			settled = true
			break
		}
		w.step++
		w.once()
	}
	w.observeAll()
	h := w.rec.History()
	res := &Result{
		Seed:        seed,
		Report:      invariant.Check(h, w.clk.Now()),
		History:     h,
		Steps:       steps,
		SettleSteps: settle,
		Settled:     settled,
		SimTime:     w.clk.Now().Sub(Epoch),
		MaxReceives: w.maxReceives,
		Faults:      w.stats,
	}
	res.Faults.Store = w.storeFault.Stats()
	res.Faults.Queue = w.workFault.Stats()
	res.Notes = w.notes
	return res, nil
}

// close releases the run's stores and queues.
func (w *world) close() {
	w.store.Close()
	w.truth.Close()
	w.broker.Close()
}

func cmpOr(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}

func newWorld(ctx context.Context, seed uint64, cfg *Config) (*world, error) {
	rnd := rand.New(rand.NewPCG(seed, 0x5eed))
	clk := clock.NewFake(Epoch)
	w := &world{
		ctx: ctx, seed: seed, rnd: rnd, clk: clk,
		rec:    invariant.NewRecorder(clk),
		policy: job.DefaultPolicy,
		trace:  cfg.Trace,
		ackSet: map[string]bool{},
	}
	m := cfg.Metrics
	if m == nil {
		m = metrics.New()
	}

	// The job store: memory, recorded as applied, faults on top.
	backend := memjobstore.NewBackend()
	var base jobstore.Driver = backend.Driver()
	if cfg.WrapStore != nil {
		base = cfg.WrapStore(base)
	}
	w.storeFault = faultjobstore.Wrap(invariant.RecordDriver(base, w.rec), &faultjobstore.Options{
		Rand: rand.New(rand.NewPCG(seed, 1)),
		// A slow call lands later: the clock moves while it is on its way.
		Sleep: func(_ context.Context, d time.Duration) error { clk.Advance(d); return nil },
	})
	w.store = jobstore.New(w.storeFault, &jobstore.Options{Clock: clk})
	w.truth = backend.Open(&memjobstore.Options{Clock: clk})

	// The queues: the work queue with faults, its DLQ without.
	broker := memqueue.New(&memqueue.Options{Clock: clk})
	w.broker = broker
	if err := broker.CreateQueue(ctx, "work-dlq", memqueue.Config{}); err != nil {
		return nil, err
	}
	// The services' default is 10 receives before the DLQ; fewer make the
	// DLQ path (a job failed with the reason) common enough to exercise.
	w.maxReceives = pick(rnd, []int{3, 5, 10, 10})
	if err := broker.CreateQueue(ctx, "work", memqueue.Config{Visibility: visibility, DeadLetter: "work-dlq", MaxReceives: w.maxReceives}); err != nil {
		return nil, err
	}
	w.tracef("work queue: visibility %s, dead-letter after %d receives", visibility, w.maxReceives)
	workD, err := broker.Open(ctx, "work")
	if err != nil {
		return nil, err
	}
	w.work, w.workFault = faultqueue.New(workD.Driver(), &faultqueue.Options{Rand: rand.New(rand.NewPCG(seed, 2))})
	if w.dlq, err = broker.Open(ctx, "work-dlq"); err != nil {
		return nil, err
	}

	w.disp = dispatcher.NewService(w.store, w.work, nil, &dispatcher.Options{Policy: w.policy, Clock: clk, Metrics: m})

	w.faultsOn = !cfg.NoFaults && rnd.Float64() < 0.9
	if w.faultsOn {
		w.rates = drawRates(rnd)
	}
	// One reaper, or two racing each other (every reaper write is
	// conditional on the revision read, so two are safe).
	for i := range 1 + rnd.IntN(2) {
		p := &reaperProc{name: fmt.Sprintf("reaper%d", i+1), nextSweep: Epoch}
		if w.faultsOn && rnd.Float64() < w.rates.skew {
			w.stats.Skewed++
			p.offset = time.Duration(rnd.IntN(4000)-2000) * time.Millisecond
			if rnd.IntN(5) == 0 {
				p.offset *= 20 // beyond the lease's margin
			}
		}
		p.r = reaper.New(w.store, w.work, &reaper.Options{Policy: w.policy, WorkDLQ: w.dlq,
			MaxRedrives: maxRedrives(seed), Clock: skewed{clk, p.offset}, Metrics: m})
		w.reapers = append(w.reapers, p)
		w.tracef("%s (clock %+v)", p.name, p.offset)
	}
	w.target = cfg.Workers
	if w.target == 0 {
		w.target = 2 + rnd.IntN(3)
	}
	for range w.target {
		w.spawn()
	}
	w.plan(cmpOr(cfg.Jobs, 20+rnd.IntN(21)))
	return w, nil
}

// skewed is a process's clock: the fake clock plus an offset.
type skewed struct {
	clk    *clock.Fake
	offset time.Duration
}

func (s skewed) Now() time.Time { return s.clk.Now().Add(s.offset) }

// reaperProc is one reaper process.
type reaperProc struct {
	name      string
	r         *reaper.Reaper
	offset    time.Duration
	nextSweep time.Time // fake time
	downUntil time.Time // fake time: a reaper that is down does nothing
}

func (p *reaperProc) up(t time.Time) bool { return !t.Before(p.downUntil) }

// drawRates draws a seed's fault rates: each kind of fault is on in about
// half the seeds, at a rate from mild to heavy.
func drawRates(r *rand.Rand) faultRates {
	on := func(maxRate float64) float64 {
		if r.IntN(2) == 0 {
			return 0
		}
		return maxRate * r.Float64()
	}
	f := faultRates{
		store: faultjobstore.Faults{
			Unavailable:      on(0.08),
			EntryUnavailable: on(0.05),
			Ambiguous:        on(0.05),
			Slow:             on(0.2),
			MaxLatency:       time.Duration(1+r.IntN(8)) * time.Second,
		},
		queue: faultqueue.Faults{
			Unavailable:    on(0.05),
			Lose:           on(0.1),
			Duplicate:      on(0.15),
			Delay:          on(0.2),
			MaxDelay:       time.Duration(1+r.IntN(60)) * time.Second,
			LoseDelete:     on(0.1),
			LoseVisibility: on(0.1),
		},
		crash:         on(0.06),
		drain:         on(0.03),
		stall:         on(0.04),
		reaperDown:    on(0.15),
		storeOutage:   on(0.05),
		skew:          on(0.5),
		eventLost:     on(0.3),
		eventDup:      on(0.4),
		eventDelay:    time.Duration(r.IntN(40)) * time.Second,
		malformed:     on(0.02),
		badSubmission: on(0.15),
	}
	return f
}

// action is one step an actor may take now, chosen with probability
// proportional to weight. do reports whether it changed anything. who,
// what and about name it in traces.
type action struct {
	who, what, about string
	weight           float64
	do               func() bool
}

// adder lists an action: who does what (about a job, or "").
type adder func(who, what, about string, weight float64, do func() bool)

// once takes one step: it lists what every actor could do now and lets
// the seeded scheduler pick one.
func (w *world) once() {
	w.applyFaults()
	next, any := w.broker.NextVisible("work")
	w.visible = any && !next.After(w.clk.Now())
	acts := w.acts[:0]
	add := func(who, what, about string, weight float64, do func() bool) {
		if weight > 0 {
			acts = append(acts, action{who, what, about, weight, do})
		}
	}
	now := w.clk.Now()

	// Time passes.
	add("clock", "tick", "", 3, w.tick)
	// The dispatcher and its producers.
	if w.hasDueSubmission(now) {
		add("producer", "submit", "", 4, w.submit)
	}
	if len(w.acked) > 0 {
		add("client", "cancel", "", 0.08, w.cancel)
		add("client", "observe", "", 0.5, w.observe)
	}
	if w.faultsOn && !w.settling {
		add("producer", "malformed message", "", w.rates.malformed*10, w.malformed)
		if !now.Before(w.storeDownUntil) {
			add("store", "outage", "", w.rates.storeOutage, func() bool {
				w.storeDownUntil = now.Add(time.Duration(5+w.rnd.IntN(55)) * time.Second)
				w.stats.StoreOutages++
				w.stats.LongestStoreOutage = max(w.stats.LongestStoreOutage, w.storeDownUntil.Sub(now))
				w.tracef("store down for %s", w.storeDownUntil.Sub(now))
				return true
			})
		}
	}
	// The reapers.
	var up []*reaperProc
	for _, p := range w.reapers {
		if !p.up(now) {
			continue
		}
		up = append(up, p)
		if !now.Before(p.nextSweep) {
			add(p.name, "sweep", "", 6, func() bool { return w.sweep(p) })
		} else {
			add(p.name, "sweep early", "", 0.05, func() bool { return w.sweep(p) })
		}
		if w.faultsOn && !w.settling {
			add(p.name, "down", "", w.rates.reaperDown, func() bool {
				p.downUntil = now.Add(time.Duration(30+w.rnd.IntN(210)) * time.Second)
				w.stats.ReaperOutages++
				w.tracef("%s down for %s", p.name, p.downUntil.Sub(now))
				return true
			})
		}
	}
	if len(up) > 0 && len(w.events) > 0 && !now.Before(w.events[0].at) {
		add("fleet", "event", "", 4, func() bool { return w.deliverEvent(pick(w.rnd, up)) })
	}
	// The fleet.
	alive := w.alive()
	if alive < w.target {
		add("fleet", "spawn", "", 0.6, func() bool { w.spawn(); return true })
	}
	// Workers.
	for _, wk := range w.workers {
		if !wk.alive {
			if now.Before(wk.ghostUntil) {
				add(wk.id, "orphaned poll", "", 2, wk.ghostReceive)
			}
			continue
		}
		wk.actions(add)
		if w.faultsOn && !w.settling {
			add(wk.id, "crash", "", w.rates.crash, wk.crash)
			add(wk.id, "stall", "", w.rates.stall, wk.stall)
			if !wk.draining {
				add(wk.id, "drain", "", w.rates.drain, wk.drain)
			}
		}
	}

	total := 0.0
	for _, a := range acts {
		total += a.weight
	}
	x := w.rnd.Float64() * total
	pick := acts[len(acts)-1]
	for _, a := range acts {
		if x < a.weight {
			pick = a
			break
		}
		x -= a.weight
	}
	did := pick.do()
	w.acts = acts[:0]
	if w.trace != nil {
		name := pick.who + " " + pick.what
		if pick.about != "" {
			name += " " + pick.about
		}
		if !did && pick.who != "clock" {
			name += " (nothing)"
		}
		fmt.Fprintf(w.trace, "%5d %s %s\n", w.step, w.clk.Now().Sub(Epoch).Round(time.Millisecond), name)
	}
	if w.settling {
		w.idle(did)
	}
}

// idle lets time run ahead in the quiescent phase when nothing happens.
func (w *world) idle(did bool) {
	if did {
		w.idleRun = 0
		return
	}
	w.idleRun++
	if w.idleRun < 4 {
		return
	}
	// Jump to the next thing due: a worker's timer, a job, an event, a
	// message. Sweeps in between would find nothing: the reaper sweeps
	// when it arrives.
	now := w.clk.Now()
	next := w.nextWorkerTimer()
	if t := w.nextDue(now); t.Before(next) {
		next = t
	}
	if events := w.events; len(events) > 0 && events[0].at.Before(next) {
		next = events[0].at
	}
	if t, ok := w.broker.NextVisible("work"); ok && t.Before(next) {
		next = t
	}
	if !next.After(now) {
		next = now.Add(time.Duration(10+w.rnd.IntN(200)) * time.Millisecond)
	}
	w.clk.Set(next)
	w.idleRun = 0
}

// nextDue is when the next stored job needs anyone: a queued job's message
// becomes visible (its RunAt) or is due for a resend, a scheduled job is due
// for promotion, a running job's lease or deadline runs out. It is at most
// an hour ahead.
func (w *world) nextDue(now time.Time) time.Time {
	next := now.Add(time.Hour)
	for _, st := range []job.Status{job.Queued, job.Scheduled, job.Running} {
		p, err := w.truth.List(w.ctx, jobstore.ListQuery{Status: st, Limit: jobstore.MaxListLimit})
		if err != nil {
			continue
		}
		for _, j := range p.Jobs {
			t := j.DueAt
			if st == job.Queued && j.RunAt.After(now) {
				t = j.RunAt
			}
			if !t.After(now) {
				return now // due already: the reaper's next sweep takes it
			}
			if t.Before(next) {
				next = t
			}
		}
	}
	return next
}

// busy reports whether any worker is running or committing a job.
func (w *world) busy() bool {
	for _, wk := range w.workers {
		if wk.alive && (len(wk.runs) > 0 || len(wk.inbox) > 0) {
			return true
		}
	}
	return false
}

// applyFaults sets the wrappers' faults for the phase.
func (w *world) applyFaults() {
	if w.faultsOn && !w.settling {
		f := w.rates.store
		if w.clk.Now().Before(w.storeDownUntil) {
			f.Unavailable = 1
		}
		w.storeFault.SetFaults(f)
		w.workFault.SetFaults(w.rates.queue)
		return
	}
	w.storeFault.SetFaults(faultjobstore.Faults{})
	w.workFault.SetFaults(faultqueue.Faults{})
}

// quiesce starts the quiescent phase: faults off, clocks in sync, every
// submission made, the fleet at its target.
func (w *world) quiesce() {
	w.settling = true
	w.applyFaults()
	for _, wk := range w.workers {
		wk.offset = 0
		wk.stalledUntil = time.Time{}
	}
	for _, p := range w.reapers {
		p.downUntil = time.Time{}
	}
}

// tick lets time pass, but not past the next timer (a heartbeat or a
// sweep) by more than a little: the processes' tickers fire on time unless
// a process stalls, which is a fault of its own (worker.stall).
func (w *world) tick() bool {
	var d time.Duration
	if w.rnd.Float64() < 0.85 {
		d = time.Duration(50+w.rnd.IntN(2000)) * time.Millisecond
	} else {
		d = time.Duration(2+w.rnd.IntN(9)) * time.Second
	}
	now := w.clk.Now()
	if next := w.nextTimer(); next.After(now) {
		d = min(d, next.Sub(now)+time.Duration(w.rnd.IntN(500))*time.Millisecond)
	} else {
		d = min(d, time.Duration(10+w.rnd.IntN(200))*time.Millisecond) // a timer is due: its step comes soon
	}
	w.clk.Advance(d)
	return false // time passing is not progress (see idle)
}

// nextTimer is when the next thing a process does by itself is due: a
// sweep, a heartbeat, a handler returning, a commit or start under way.
func (w *world) nextTimer() time.Time {
	now := w.clk.Now()
	t := w.nextWorkerTimer()
	for _, p := range w.reapers {
		if p.up(now) && p.nextSweep.Before(t) {
			t = p.nextSweep
		}
	}
	return t
}

// nextWorkerTimer is when a worker next does something by itself.
func (w *world) nextWorkerTimer() time.Time {
	now := w.clk.Now()
	t := now.Add(time.Hour)
	for _, wk := range w.workers {
		if !wk.alive || wk.stalled(now) {
			continue
		}
		if next := wk.nextDue(now); next.Before(t) {
			t = next
		}
	}
	return t
}

// sweep runs one pass of a reaper.
func (w *world) sweep(p *reaperProc) bool {
	p.nextSweep = w.clk.Now().Add(sweepEvery)
	res, _ := p.r.Sweep(w.ctx) // errors are injected faults; the next pass retries
	return res.Any()
}

func (w *world) alive() int {
	n := 0
	for _, wk := range w.workers {
		if wk.alive {
			n++
		}
	}
	return n
}

// allTerminal reports whether every stored job is terminal and no worker
// has a commit in progress.
func (w *world) allTerminal() bool {
	if w.busy() {
		return false
	}
	for _, s := range w.subs {
		if !s.done {
			return false
		}
	}
	for _, st := range []job.Status{job.Queued, job.Scheduled, job.Running} {
		p, err := w.truth.List(w.ctx, jobstore.ListQuery{Status: st, Limit: 1})
		if err != nil || len(p.Jobs) > 0 {
			return false
		}
	}
	return true
}

// observeAll reads every acknowledged job at the end, as a client would.
func (w *world) observeAll() {
	for _, id := range w.acked {
		j, err := w.truth.Get(w.ctx, id)
		if err != nil {
			continue
		}
		w.recordObserved(j)
	}
}

func (w *world) recordObserved(j *job.Job) {
	if j.Status.Terminal() {
		w.rec.Record(invariant.Event{Kind: invariant.Observed, Job: j.ID, Status: j.Status, Result: invariant.Digest(j.Result, j.ResultRef)})
	}
}

func (w *world) tracef(format string, args ...any) {
	if w.trace != nil {
		fmt.Fprintf(w.trace, "      "+format+"\n", args...)
	}
}

// Digest identifies the run's history: two runs of one seed have the
// same.
func (r *Result) Digest() string {
	s := sha256.New()
	for _, e := range r.History {
		fmt.Fprintf(s, "%d|%d|%s|%s|%s|%d|%s|%s|%t|%s|%s|%s|%s|%d\n", e.Seq, e.Time.UnixNano(), e.Kind, e.Job, e.Key,
			e.Attempt, e.Owner, e.Event, e.Accepted, e.Status, e.Outcome, e.Result, e.Reason, e.RunAt.UnixNano())
	}
	return hex.EncodeToString(s.Sum(nil)[:12])
}

// pick returns a random element of s.
func pick[T any](r *rand.Rand, s []T) T { return s[r.IntN(len(s))] }
