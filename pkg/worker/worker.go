// Package worker is the worker core: it receives work messages, starts each
// job with one conditional write, runs the registered handler, keeps the
// lease and the message alive with a batched heartbeat, and finishes with
// writes fenced on owner and attempt.
//
// # Protocol (see DESIGN.md)
//
//  1. Receive up to the free concurrency (≤ 10 a call) with long polling.
//  2. Start: job.Policy.Start, conditional on QUEUED and the message's
//     attempt (one batched Apply for the whole receive). A job RUNNING with
//     an expired lease is taken over (attempt+1, a failure spent); one that
//     a failure more would exhaust, or with a cancel request, is reclaimed
//     instead. Anything else is a stale message: deleted (ResolveStart).
//     A start the store refuses (the whole write, or its entry) gives its
//     message back after GiveBackDelay, which grows with the message's
//     receive count, so an outage of minutes does not exhaust the work
//     queue's receives (a longer one does: the reaper sends such a
//     dead-lettered message again, package reaper).
//  3. Heartbeat: one goroutine renews every running job's lease in one
//     batched Apply (fenced on owner and attempt, carrying progress and
//     reading back cancel requests) and, alongside, extends the messages'
//     visibility. Both calls may run until one interval before the
//     earliest lease ends (at least half an interval), so a slow store
//     still renews in time and a hung one cannot keep a job to its lease's
//     end.
//     A renewal that loses its condition means the lease is lost: the
//     handler's context is cancelled and the attempt commits nothing
//     (RenewalResult). Every run is tracked until its own handler returns,
//     also when its job was re-queued under it and started again here (the
//     old run's next renewal then finds its lease lost). A message nearing
//     SQS's 12 h visibility cap is deleted and the job goes on under its
//     lease alone (NearVisibilityCap).
//  4. Finish: the handler's return and its context's cause make the
//     attempt's outcome (AttemptEnd; a retry waits Backoff). Results above
//     the inline limit and the attempt's log go to the blob store first;
//     then one fenced write records the outcome; a retry (or hand-back, or
//     snooze) sends the job's next message; last, the received message is
//     deleted. A crash between any two of these steps is recovered by the
//     reaper (lease expiry, resend of queued jobs) and by fencing (a stale
//     message cannot start anything).
//
// The decisions of steps 2-4 are pure functions (decide.go), shared with
// the protocol's simulation (package sim).
//
// # Lifecycle
//
// Start runs the worker; Stop drains it: it stops receiving, gives running
// jobs DrainTimeout to finish, then cancels the rest and hands them back
// (re-queued at once, no attempt spent) and returns when every job is
// committed. Done closes when the worker has been idle for IdleTimeout, so
// main can exit and the fleet scales in by itself. Healthy reports false
// while draining (/health answers 503).
package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jobfleet/jobfleet/pkg/blob"
	"github.com/jobfleet/jobfleet/pkg/clock"
	"github.com/jobfleet/jobfleet/pkg/errcode"
	"github.com/jobfleet/jobfleet/pkg/job"
	"github.com/jobfleet/jobfleet/pkg/jobstore"
	"github.com/jobfleet/jobfleet/pkg/metrics"
	"github.com/jobfleet/jobfleet/pkg/queue"
	"github.com/jobfleet/jobfleet/pkg/work"
)

// Options configure a Worker. Zero fields take the defaults noted.
type Options struct {
	// DLQ receives work messages that cannot be decoded, with the reason in
	// a "reason" attribute. Without one they are deleted and logged.
	DLQ *queue.Queue
	// Policy holds the lease and queueing durations (default job.DefaultPolicy).
	Policy job.Policy
	// Concurrency is how many jobs run at once (default 4).
	Concurrency int
	// Heartbeat is the renewal interval (default 10 s); it must be well
	// under Policy.Lease.
	Heartbeat time.Duration
	// Visibility is the work messages' visibility timeout (default
	// Policy.Lease + Heartbeat); at least Policy.Lease.
	Visibility time.Duration
	// ReceiveWait is the long-poll wait (default 20 s).
	ReceiveWait time.Duration
	// IdleTimeout: with no work for this long, Done closes (0: never).
	IdleTimeout time.Duration
	// FreeMemoryWhenIdle: after a second without work, return the Go heap's
	// free memory to the OS (runtime/debug.FreeOSMemory, a full GC), once
	// per idle spell, so that a worker waiting for work keeps a small
	// footprint. It acts on the whole process: for a worker that has its
	// process to itself (workermain sets it).
	FreeMemoryWhenIdle bool
	// DrainTimeout is how long running jobs may go on after Stop before
	// they are handed back (default 25 s).
	DrainTimeout time.Duration
	// AbandonAfter is how long a handler whose context ended may take to
	// return before the worker commits the outcome without it (default 5 s).
	AbandonAfter time.Duration
	// InlineLimit: results larger than this many bytes go to the blob store
	// (default 8 KiB).
	InlineLimit int
	// RetryBase and RetryMax bound the exponential retry backoff (defaults
	// 1 s and 1 h); the delay is jittered between half and all of it.
	RetryBase, RetryMax time.Duration
	// MaxLogBytes caps one attempt's log (default 16 MiB); the rest is cut.
	MaxLogBytes int64
	Clock       clock.Clock
	Logger      *slog.Logger
	Metrics     *metrics.Metrics
}

func (o *Options) fill() {
	if o.Policy.Lease == 0 {
		o.Policy = job.DefaultPolicy
	}
	o.Concurrency = cmpOr(o.Concurrency, 4)
	o.Heartbeat = cmpOr(o.Heartbeat, 10*time.Second)
	o.Visibility = cmpOr(o.Visibility, o.Policy.Lease+o.Heartbeat)
	o.ReceiveWait = cmpOr(o.ReceiveWait, queue.MaxWait)
	o.DrainTimeout = cmpOr(o.DrainTimeout, 25*time.Second)
	o.AbandonAfter = cmpOr(o.AbandonAfter, 5*time.Second)
	o.InlineLimit = cmpOr(o.InlineLimit, 8<<10)
	o.RetryBase = cmpOr(o.RetryBase, time.Second)
	o.RetryMax = cmpOr(o.RetryMax, time.Hour)
	o.MaxLogBytes = cmpOr(o.MaxLogBytes, 16<<20)
	o.Clock = clock.Or(o.Clock)
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Metrics == nil {
		o.Metrics = metrics.New()
	}
}

func cmpOr[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// Worker runs jobs. Make one with New.
type Worker struct {
	id    string
	store *jobstore.Store
	work  *queue.Queue
	blob  *blob.Bucket
	reg   *Registry
	o     Options
	log   *slog.Logger
	m     *metrics.Metrics

	mu sync.Mutex
	// running holds every run whose handler has not returned, keyed by
	// run: a job re-queued while its handler still runs (reclaimed after
	// a timeout or an expired lease) may start again here, and then both
	// runs are tracked until each returns (the old one's next renewal
	// finds its lease lost).
	running map[*run]struct{}

	slots      chan struct{}
	lastActive atomic.Int64  // unix nanos of the last receive or finish
	freeMemory func()        // debug.FreeOSMemory; tests count calls
	idleEvery  time.Duration // the idle check's period (1 s; tests shorten it)
	idleTicked func()        // nil; tests see each idle check

	started     atomic.Bool
	draining    atomic.Bool
	runCtx      context.Context
	cancelRun   context.CancelFunc
	fetchCtx    context.Context
	cancelFetch context.CancelFunc
	fetchWG     sync.WaitGroup
	bgWG        sync.WaitGroup
	jobsWG      sync.WaitGroup
	commitWG    sync.WaitGroup
	finishes    chan finish   // to the committer
	commitStop  chan struct{} // closed once no job can finish any more
	idle        chan struct{}
	idleOnce    sync.Once
	stopOnce    sync.Once
}

// New returns a worker that owns jobs as id, reads work from work, and
// keeps results and logs in bucket.
func New(id string, store *jobstore.Store, work *queue.Queue, bucket *blob.Bucket, reg *Registry, opts *Options) (*Worker, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	o.fill()
	switch {
	case id == "":
		return nil, errcode.New(errcode.InvalidArgument, "worker: empty identity")
	case o.Visibility < o.Policy.Lease:
		return nil, errcode.New(errcode.InvalidArgument, "worker: visibility %s is shorter than the lease %s", o.Visibility, o.Policy.Lease)
	case o.Policy.Lease <= 2*o.Heartbeat:
		return nil, errcode.New(errcode.InvalidArgument, "worker: lease %s must be more than 2 × heartbeat %s", o.Policy.Lease, o.Heartbeat)
	}
	w := &Worker{
		id: id, store: store, work: work, blob: bucket, reg: reg, o: o,
		log:        o.Logger.With("owner", id),
		m:          o.Metrics,
		running:    map[*run]struct{}{},
		slots:      make(chan struct{}, o.Concurrency),
		idle:       make(chan struct{}),
		finishes:   make(chan finish),
		commitStop: make(chan struct{}),
		freeMemory: debug.FreeOSMemory,
		idleEvery:  time.Second,
	}
	return w, nil
}

// ID returns the worker's identity (the owner it writes into jobs).
func (w *Worker) ID() string { return w.id }

// Start starts receiving and running jobs. ctx bounds everything the worker
// does: when it ends, running jobs are handed back at once.
func (w *Worker) Start(ctx context.Context) error {
	if !w.started.CompareAndSwap(false, true) {
		return errcode.New(errcode.FailedPrecondition, "worker already started")
	}
	w.runCtx, w.cancelRun = context.WithCancel(ctx)
	w.fetchCtx, w.cancelFetch = context.WithCancel(w.runCtx)
	w.touch()
	w.fetchWG.Add(1)
	go w.fetchLoop()
	w.commitWG.Add(1)
	go w.commitLoop()
	w.bgWG.Add(2)
	go w.heartbeatLoop()
	go w.idleLoop()
	w.log.Info("worker started", "concurrency", w.o.Concurrency, "heartbeat", w.o.Heartbeat.String(),
		"lease", w.o.Policy.Lease.String(), "visibility", w.o.Visibility.String(), "types", w.reg.Types())
	return nil
}

// Done is closed when the worker has had no work for IdleTimeout.
func (w *Worker) Done() <-chan struct{} { return w.idle }

// Healthy reports whether the worker takes work (false once draining).
func (w *Worker) Healthy() bool { return !w.draining.Load() }

// Running returns how many runs are in progress: handlers that have not
// returned (a job re-queued while its old handler still runs may count
// twice, once per attempt).
func (w *Worker) Running() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.running)
}

// Stop drains the worker (see the package doc) and waits for all of its
// goroutines. It is safe to call twice and before Start.
func (w *Worker) Stop() {
	w.stopOnce.Do(func() {
		w.draining.Store(true)
		if !w.started.Load() {
			return
		}
		w.cancelFetch()
		w.fetchWG.Wait()
		if n := w.Running(); n > 0 {
			w.log.Info("draining", "running", n, "budget", w.o.DrainTimeout.String())
			if !waitFor(&w.jobsWG, w.o.DrainTimeout) {
				for _, r := range w.snapshot() {
					r.cancel(ErrHandBack)
				}
			}
		}
		w.jobsWG.Wait()
		close(w.commitStop)
		w.commitWG.Wait()
		w.cancelRun()
		w.bgWG.Wait()
		w.log.Info("worker stopped")
	})
}

func waitFor(wg *sync.WaitGroup, d time.Duration) bool {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}

func (w *Worker) touch() { w.lastActive.Store(w.o.Clock.Now().UnixNano()) }

func (w *Worker) snapshot() []*run {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]*run, 0, len(w.running))
	for r := range w.running {
		out = append(out, r)
	}
	return out
}

// idleLoop closes Done after IdleTimeout without work, and returns free
// memory to the OS once a spell without work has lasted idleRelease (with
// Options.FreeMemoryWhenIdle).
func (w *Worker) idleLoop() {
	defer w.bgWG.Done()
	if w.o.IdleTimeout <= 0 && !w.o.FreeMemoryWhenIdle {
		return
	}
	every := w.idleEvery
	if w.o.IdleTimeout > 0 {
		every = min(w.o.IdleTimeout/4+time.Millisecond, every)
	}
	t := time.NewTicker(every)
	defer t.Stop()
	var released int64 // the lastActive whose idle spell has been released
	for {
		select {
		case <-w.runCtx.Done():
			return
		case <-t.C:
			if w.idleTicked != nil {
				w.idleTicked()
			}
			if w.Running() > 0 {
				continue
			}
			at := w.lastActive.Load()
			idle := w.o.Clock.Now().Sub(time.Unix(0, at))
			if w.o.FreeMemoryWhenIdle && idle >= idleRelease && released != at {
				released = at
				w.freeMemory()
			}
			if w.o.IdleTimeout > 0 && idle >= w.o.IdleTimeout {
				w.idleOnce.Do(func() {
					w.log.Info("idle; exiting", "idle_timeout", w.o.IdleTimeout.String())
					close(w.idle)
				})
				return
			}
		}
	}
}

// idleRelease is how long a worker runs nothing before it returns free
// memory to the OS (Options.FreeMemoryWhenIdle).
const idleRelease = time.Second

// fetchLoop receives work while the fetch context lives.
func (w *Worker) fetchLoop() {
	defer w.fetchWG.Done()
	ctx := w.fetchCtx
	errs := newLimiter(5 * time.Second)
	for {
		select {
		case <-ctx.Done():
			return
		case w.slots <- struct{}{}:
		}
		n := 1
		for n < queue.MaxBatch {
			select {
			case w.slots <- struct{}{}:
				n++
				continue
			default:
			}
			break
		}
		msgs, err := w.work.Receive(ctx, queue.ReceiveOptions{Max: n, Wait: w.o.ReceiveWait, Visibility: w.o.Visibility})
		if err != nil && ctx.Err() == nil {
			w.m.Errors.WithLabelValues("worker", "receive").Inc()
			if errs.allow() {
				w.log.Error("receive work", "queue", w.work.Name(), "err", err)
			}
			w.release(n)
			sleep(ctx, time.Second)
			continue
		}
		w.release(n - len(msgs))
		if len(msgs) == 0 {
			continue
		}
		w.touch()
		if ctx.Err() != nil {
			// Draining: give them back at once rather than after the
			// visibility timeout.
			w.giveBack(msgs)
			w.release(len(msgs))
			return
		}
		w.startAll(ctx, msgs)
	}
}

func (w *Worker) release(n int) {
	for range n {
		<-w.slots
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// giveBack makes received messages visible again now.
func (w *Worker) giveBack(msgs []*queue.Message) {
	ctx, cancel := w.commitCtx()
	defer cancel()
	changes := make([]queue.VisibilityChange, len(msgs))
	for i, m := range msgs {
		changes[i] = queue.VisibilityChange{Handle: m.Handle}
	}
	if _, err := w.work.ChangeVisibility(ctx, changes...); err != nil {
		w.log.Warn("give back messages", "err", err)
	}
}

// uploadBudget bounds the upload of an attempt's result and log.
const uploadBudget = 10 * time.Minute

// commitCtx bounds a write that must go out even while the worker stops
// (a finish, a hand-back, a message give-back): it outlives the run context
// on purpose, for at most 10 seconds.
func (w *Worker) commitCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(w.runCtx), 10*time.Second)
}

// startAll starts the jobs named by msgs (one slot each, already taken).
func (w *Worker) startAll(ctx context.Context, msgs []*queue.Message) {
	now := w.o.Clock.Now()
	var changes []job.Change
	var held []*queue.Message
	var ids []job.Message
	for _, m := range msgs {
		jm, err := job.DecodeMessage(m.Body)
		if err != nil {
			w.deadLetter(m, err)
			w.release(1)
			continue
		}
		changes = append(changes, w.o.Policy.Start(jm, w.id, now))
		held = append(held, m)
		ids = append(ids, jm)
	}
	if len(changes) == 0 {
		return
	}
	// The start writes must not be cut off by a stop (an unanswered write
	// may still land): a bounded context of their own.
	cctx, cancel := w.commitCtx()
	defer cancel()
	res, err := w.store.Apply(cctx, changes...)
	if err != nil {
		w.m.Errors.WithLabelValues("worker", "start").Inc()
		w.log.Error("start jobs", "n", len(changes), "err", err)
		res = make([]jobstore.ChangeResult, len(changes))
		for i := range res {
			res[i].Err = err
		}
	}
	var later []*queue.Message
	for i, r := range res {
		m := held[i]
		switch {
		case r.Err == nil:
			w.launch(r.Job, m)
		case errors.Is(r.Err, errcode.FailedPrecondition):
			w.conflict(cctx, m, ids[i], r.Job, now)
		case errors.Is(r.Err, errcode.NotFound):
			w.stale(m, ids[i], "job not found")
		default:
			// No answer: the start may have landed. If it did, the job is
			// ours — run it, or its lease would run out unused and spend an
			// attempt.
			if j := w.startedByUs(cctx, ids[i].ID, ids[i].Attempt+1); j != nil {
				w.launch(j, m)
				continue
			}
			w.m.Errors.WithLabelValues("worker", "start").Inc()
			w.log.Error("start job", "job_id", ids[i].ID, "attempt", ids[i].Attempt+1, "err", r.Err)
			later = append(later, m)
		}
	}
	if len(later) > 0 {
		w.giveBackLater(later)
		w.release(len(later))
	}
}

// giveBackLater makes messages whose jobs could not be started visible
// again after GiveBackDelay: sooner than the visibility timeout, and later
// with each receive, so that a store outage does not spend their receives
// (see GiveBackDelay). If the change fails, they come back after the
// visibility timeout.
func (w *Worker) giveBackLater(msgs []*queue.Message) {
	ctx, cancel := w.commitCtx()
	defer cancel()
	vc := make([]queue.VisibilityChange, len(msgs))
	for i, m := range msgs {
		vc[i] = queue.VisibilityChange{Handle: m.Handle, Timeout: GiveBackDelay(m.ReceiveCount, w.o.Visibility)}
	}
	if _, err := w.work.ChangeVisibility(ctx, vc...); err != nil {
		w.log.Warn("give back messages", "n", len(msgs), "err", err)
	}
}

// conflict handles a message whose start lost (ResolveStart): take over an
// expired lease, settle a job a takeover would exhaust, or drop a stale
// message.
func (w *Worker) conflict(ctx context.Context, m *queue.Message, jm job.Message, cur *job.Job, now time.Time) {
	res, change := ResolveStart(w.o.Policy, cur, w.id, now)
	switch res {
	case Stale:
		why := "job not startable"
		if cur != nil {
			why = fmt.Sprintf("job is %s at attempt %d", cur.Status, cur.Attempt)
		}
		w.stale(m, jm, why)
		return
	case TakeOver:
		n, err := w.store.ApplyOne(ctx, change)
		if err != nil && !LostCondition(err) {
			n = w.startedByUs(ctx, cur.ID, cur.Attempt+1) // no answer: it may have landed
			if n != nil {
				err = nil
			}
		}
		if err == nil {
			w.log.Info("took over job with expired lease", "job_id", cur.ID, "attempt", n.Attempt, "previous_owner", cur.Owner)
			w.launch(n, m)
			return
		}
		w.stale(m, jm, "takeover lost: "+err.Error())
		return
	}
	// A failure more exhausts it, or a cancel is pending: settle it now.
	n, err := w.store.ApplyOne(ctx, change)
	if err == nil {
		w.m.Reclaims.WithLabelValues(string(job.OutcomeLeaseExpired)).Inc()
		w.log.Info("settled job with expired lease", "job_id", cur.ID, "attempt", cur.Attempt, "status", n.Status)
		if n.Status == job.Queued {
			w.enqueue(n)
		}
	}
	w.stale(m, jm, "lease expired; job settled")
}

// startedByUs reads the job after a start or takeover that got no answer
// and returns it when that write landed (StartLanded); otherwise, or when
// the read fails too, nil.
func (w *Worker) startedByUs(ctx context.Context, id string, attempt int) *job.Job {
	j, err := w.store.Get(ctx, id)
	if err != nil || !StartLanded(j, w.id, attempt) {
		return nil
	}
	return j
}

// stale deletes a message that cannot start its job.
func (w *Worker) stale(m *queue.Message, jm job.Message, why string) {
	defer w.release(1)
	w.m.Stale.Inc()
	w.log.Debug("stale work message", "job_id", jm.ID, "attempt", jm.Attempt, "reason", why)
	w.deleteMessage(m)
}

func (w *Worker) deleteMessage(m *queue.Message) {
	ctx, cancel := w.commitCtx()
	defer cancel()
	res, err := w.work.Delete(ctx, m.Handle)
	if err == nil {
		err = res[0]
	}
	if err != nil {
		w.m.Errors.WithLabelValues("worker", "delete").Inc()
		w.log.Warn("delete work message", "err", err)
	}
}

// deadLetter moves an undecodable message to the DLQ with the reason.
func (w *Worker) deadLetter(m *queue.Message, reason error) {
	w.log.Error("undecodable work message", "message_id", m.ID, "err", reason)
	ctx, cancel := w.commitCtx()
	defer cancel()
	if w.o.DLQ != nil {
		res, err := w.o.DLQ.Send(ctx, queue.SendEntry{Body: m.Body, Attributes: map[string]string{"reason": truncate(reason.Error(), 1024)}})
		if err == nil {
			err = res[0].Err
		}
		if err != nil {
			// Keep it: it will reach the DLQ through redrive instead.
			w.log.Error("dead-letter work message", "err", err)
			return
		}
	}
	w.m.DeadLetters.WithLabelValues(w.work.Name()).Inc()
	w.deleteMessage(m)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// enqueue sends the work message for a queued job. A failure is logged:
// the reaper re-sends it after the job's resend deadline.
func (w *Worker) enqueue(j *job.Job) {
	ctx, cancel := w.commitCtx()
	defer cancel()
	errs, err := work.Enqueue(ctx, w.work, w.o.Clock.Now(), j)
	if err == nil {
		err = errs[0]
	}
	if err != nil {
		w.m.Errors.WithLabelValues("worker", "send").Inc()
		w.log.Warn("send work message; the reaper will re-send it", "job_id", j.ID, "attempt", j.Attempt, "err", err)
	}
}

// run is one running job.
type run struct {
	msg        *queue.Message
	receivedAt time.Time
	cancel     context.CancelCauseFunc

	mu         sync.Mutex
	cur        *job.Job // the owner's copy of the record
	lost       bool
	msgDeleted bool
	progress   json.RawMessage // not yet written
}

func (r *run) job() *job.Job {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cur
}

// launch runs a started job in its own goroutine (its slot already taken).
func (w *Worker) launch(j *job.Job, m *queue.Message) {
	now := w.o.Clock.Now()
	ctx, cancel := context.WithCancelCause(w.runCtx)
	r := &run{msg: m, receivedAt: now, cancel: cancel, cur: j}
	w.mu.Lock()
	w.running[r] = struct{}{}
	n := len(w.running)
	w.mu.Unlock()
	w.m.Running.Set(float64(n))
	w.m.Started.WithLabelValues(j.Type).Inc()
	w.m.QueueWait.WithLabelValues(j.Type).Observe(metrics.Since(now, later(j.RunAt, j.CreatedAt)))
	w.jobsWG.Add(1)
	go func() {
		defer w.jobsWG.Done()
		defer w.release(1)
		defer cancel(nil)
		w.execute(ctx, r)
	}()
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// execute runs the handler and commits its outcome.
func (w *Worker) execute(ctx context.Context, r *run) {
	j := r.job()
	log := w.log.With("job_id", j.ID, "attempt", j.Attempt, "type", j.Type)
	started := w.o.Clock.Now()
	// The deadline is on the injected clock; the context's timer runs on
	// real time, so hand it the time left.
	deadline := j.StartedAt.Add(time.Duration(j.Timeout))
	hctx, hcancel := context.WithTimeoutCause(ctx, deadline.Sub(w.o.Clock.Now()), ErrTimeout)
	defer hcancel()

	logs := newLogBuffer(w.o.MaxLogBytes)
	defer logs.Close()
	hj := &Job{
		ID: j.ID, Type: j.Type, Key: j.Key, Attempt: j.Attempt, Deadline: deadline,
		Log: logs, Logger: log,
		progress: func(b json.RawMessage) { r.mu.Lock(); r.progress = b; r.mu.Unlock() },
	}
	var ret Return
	h, ok := w.reg.Lookup(j.Type)
	switch {
	case j.CancelRequested:
		// Asked to cancel while an earlier attempt ran, and re-queued
		// before that attempt's owner saw it: do not run this one.
		r.cancel(ErrCancelRequested)
		<-hctx.Done()
		ret.Err = context.Cause(hctx)
	case !ok:
		ret.Err = fmt.Errorf("no handler for type %q on worker %s (it serves %v)", j.Type, w.id, w.reg.Types())
	default:
		payload, err := w.payload(hctx, j)
		if err != nil {
			ret.Err = err
			break
		}
		hj.Payload = payload
		ret = w.callHandler(hctx, h, hj)
	}
	var cause error
	if hctx.Err() != nil {
		cause = context.Cause(hctx)
	}
	end := AttemptEnd(j, ret, cause, w.retryDelay(j))

	// The run stays in the running set, its lease renewed, until its
	// outcome is committed: uploading a large result or log can take a
	// while.
	defer func() {
		w.mu.Lock()
		delete(w.running, r)
		n := len(w.running)
		w.mu.Unlock()
		w.m.Running.Set(float64(n))
		w.touch()
	}()

	r.mu.Lock()
	lost, cur, msgDeleted := r.lost, r.cur, r.msgDeleted
	r.mu.Unlock()
	w.m.RunTime.WithLabelValues(j.Type, string(end.Outcome)).Observe(w.o.Clock.Now().Sub(started).Seconds())
	if lost || errors.Is(cause, ErrLeaseLost) {
		w.m.LeasesLost.WithLabelValues(j.Type).Inc()
		log.Warn("lease lost; committing nothing")
		if !msgDeleted {
			w.deleteMessage(r.msg)
		}
		return
	}
	w.commit(log, cur, r, end, logs)
}

// payload returns the job's payload, from the blob store when it is there.
func (w *Worker) payload(ctx context.Context, j *job.Job) (json.RawMessage, error) {
	if j.PayloadRef == "" {
		return j.Payload, nil
	}
	b, err := w.blob.ReadAll(ctx, j.PayloadRef)
	if errors.Is(err, errcode.NotFound) {
		return nil, Permanent(fmt.Errorf("payload %s is missing from the blob store", j.PayloadRef))
	}
	if err != nil {
		return nil, fmt.Errorf("read payload %s: %w", j.PayloadRef, err)
	}
	return b, nil
}

// callHandler runs h, turning a panic into a result, and gives up waiting
// AbandonAfter after ctx ends.
func (w *Worker) callHandler(ctx context.Context, h Handler, hj *Job) Return {
	ch := make(chan Return, 1)
	go func() {
		var ret Return
		defer func() {
			if p := recover(); p != nil {
				ret = Return{Panic: fmt.Sprintf("panic: %v\n%s", p, debug.Stack())}
			}
			ch <- ret
		}()
		ret.Result, ret.Err = h.Handle(ctx, hj)
	}()
	select {
	case res := <-ch:
		return res
	case <-ctx.Done():
	}
	t := time.NewTimer(w.o.AbandonAfter)
	defer t.Stop()
	select {
	case res := <-ch:
		return res
	case <-t.C:
		hj.Logger.Error("handler did not return after its context ended; abandoning it", "cause", context.Cause(ctx))
		return Return{Err: fmt.Errorf("handler abandoned after %s: %w", w.o.AbandonAfter, context.Cause(ctx))}
	}
}

// retryDelay is the jittered backoff before j's next attempt, should this
// one fail.
func (w *Worker) retryDelay(j *job.Job) time.Duration {
	return Backoff(j.Failures+1, w.o.RetryBase, w.o.RetryMax, rand.Float64())
}

// ResultKey and LogKey name an attempt's result and log in the blob store.
func ResultKey(id string, attempt int) string { return fmt.Sprintf("results/%s/%d.json", id, attempt) }

// LogKey names the log of attempt of job id in the blob store.
func LogKey(id string, attempt int) string { return fmt.Sprintf("logs/%s/%d.log", id, attempt) }

// commit stores the result and log, writes the outcome (fenced), sends the
// next message for a re-queued job, and deletes the received message.
func (w *Worker) commit(log *slog.Logger, cur *job.Job, r *run, end job.End, logs *logBuffer) {
	// Uploads outlive a stopping worker on purpose, bounded; the lease is
	// renewed meanwhile.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(w.runCtx), uploadBudget)
	defer cancel()
	if end.Outcome == job.OutcomeSucceeded && len(end.Result) > w.o.InlineLimit {
		key := ResultKey(cur.ID, cur.Attempt)
		if _, err := w.blob.PutBytes(ctx, key, end.Result, "application/json"); err != nil {
			end = job.End{Outcome: job.OutcomeFailed, Reason: "store result: " + err.Error(), Delay: w.retryDelay(cur)}
		} else {
			end.Result, end.ResultRef = nil, key
		}
	}
	if logs.Len() > 0 {
		rd, size := logs.Reader()
		if _, err := w.blob.Put(ctx, LogKey(cur.ID, cur.Attempt), rd, &blob.PutOptions{ContentType: "text/plain; charset=utf-8", Size: size}); err != nil {
			w.m.Errors.WithLabelValues("worker", "put_log").Inc()
			log.Warn("store attempt log", "err", err)
		}
	}
	r.mu.Lock()
	msg := r.msg
	if r.msgDeleted {
		msg = nil
	}
	r.mu.Unlock()
	n, err := w.commitFinish(w.o.Policy.Finish(cur, w.o.Clock.Now(), end), msg)
	switch {
	case LostCondition(err):
		w.m.LeasesLost.WithLabelValues(cur.Type).Inc()
		log.Warn("lease lost before the outcome was written; committing nothing", "outcome", end.Outcome)
	case err != nil:
		w.m.Errors.WithLabelValues("worker", "finish").Inc()
		log.Error("write outcome; the reaper will settle it", "outcome", end.Outcome, "err", err)
	default:
		w.m.Finished.WithLabelValues(cur.Type, string(end.Outcome)).Inc()
		lvl := slog.LevelInfo
		if n.Status == job.Failed {
			lvl = slog.LevelWarn
		}
		log.Log(ctx, lvl, "attempt ended", "outcome", end.Outcome, "status", n.Status, "reason", end.Reason)
	}
}
