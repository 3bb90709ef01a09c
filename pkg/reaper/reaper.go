// Package reaper is the reaper core: the sweeps that keep every accepted job
// moving when workers die or messages go missing, and the consumer of fleet
// events that reclaims a dead worker's jobs at once.
//
// # Sweeps (every Sweep interval; Sweep runs one pass)
//
//   - RUNNING past its due time: past the attempt's deadline → timed out
//     (retried or failed); lease expired → re-queued, or failed when the
//     attempts are spent, or cancelled when a cancel was pending.
//   - QUEUED past its resend deadline → the work message is sent again, and
//     the deadline doubles, so a lost message or a crash between store and
//     send never strands a job. A job that never started and passed its
//     start deadline (start_within) fails with a "provisioner:" error.
//   - SCHEDULED near its run_at → QUEUED, with the message delayed to run_at.
//   - Work-queue DLQ messages of jobs still QUEUED at the message's attempt
//     (any other is stale, dropped): a message that used up the queue's
//     receives without starting its job (workers give it back while the
//     job store refuses the start, so a store outage longer than the
//     give-backs cover gets there) brings the job's resend deadline
//     forward, and the resend sweep sends it again, so an outage does not
//     fail healthy jobs. A dead letter is handled only once its job can be
//     read, so however long the outage, its jobs run after it. A job whose
//     start keeps being refused is re-sent less and less often (the resend
//     intervals) and fails, with the reason, at its Options.MaxRedrives+1-th
//     dead letter of one queued spell (job.Job.DeadLetters); a message a
//     worker dead-lettered itself (with a "reason" attribute) fails its job
//     at once. A job with a cancel pending is cancelled instead. Nothing
//     disappears silently.
//   - Terminal records past retention → purged, where the store supports it.
//
// Every write is conditional on the revision read, so two reapers at once
// are safe: one wins each step, and only the winner sends a message.
//
// # Fleet events
//
// A STOPPED event for a worker reclaims every job it still owns at once,
// instead of after its lease. A crash or OOM spends an attempt; a Spot
// interruption or a scale-in does not. A Spot interruption notice (the task
// still running, told to stop about two minutes ahead) reclaims its jobs at
// once as well, without spending an attempt: they start again elsewhere
// while the interrupted worker, fenced off, loses its leases at its next
// heartbeat. Other stop requests leave the worker to drain and hand back
// its jobs itself. Stops are counted by class (OOM, Spot, failed to start,
// crashed, exited, scale-in) in jobfleet_fleet_stops_total.
package reaper

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/jobfleet/jobfleet/pkg/clock"
	"github.com/jobfleet/jobfleet/pkg/errcode"
	"github.com/jobfleet/jobfleet/pkg/internal/startstop"
	"github.com/jobfleet/jobfleet/pkg/job"
	"github.com/jobfleet/jobfleet/pkg/jobstore"
	"github.com/jobfleet/jobfleet/pkg/metrics"
	"github.com/jobfleet/jobfleet/pkg/queue"
	"github.com/jobfleet/jobfleet/pkg/work"
)

// Purger is implemented by job stores that delete expired terminal records
// themselves (DynamoDB deletes them by TTL).
type Purger interface {
	Purge(ctx context.Context, before time.Time, limit int) (int, error)
}

// Options configure a Reaper. Zero fields take the defaults noted.
type Options struct {
	Policy job.Policy    // default job.DefaultPolicy
	Sweep  time.Duration // default 5 s
	// Batch is the most jobs each sweep step handles per pass (default 500).
	Batch int
	// WorkDLQ is the work queue's dead-letter queue, drained into re-sent
	// messages or FAILED jobs (see the package doc).
	WorkDLQ *queue.Queue
	// MaxRedrives is how many times, in one queued spell, a job whose work
	// message reached the DLQ without starting it is sent again before it
	// fails (default DefaultMaxRedrives; negative: none, it fails at once).
	// It bounds a job whose start keeps being refused while its record can
	// be read, not the length of an outage (see the package doc).
	MaxRedrives int
	// Events is the fleet's state-change event queue; EventsDLQ receives
	// events that cannot be parsed, with the reason.
	Events, EventsDLQ *queue.Queue
	// EventsWait is the long-poll wait for events (default 20 s).
	EventsWait time.Duration
	// OrphanPoll, when positive, is how long a dead worker's last
	// long-poll may stay open at the queue. SQS does not notice a client
	// that went away: it keeps polling for it, and a message that arrives
	// meanwhile is handed to nobody and stays invisible for its visibility
	// timeout. So when the reaper re-queues a stopped worker's jobs at once,
	// it also sends each job's message a second time, delayed past that
	// window; whichever arrives first starts the job, and the other is
	// stale. The aws profile sets it to its poll wait plus a second; the
	// local queue claims in the receiving process, so 0 there.
	OrphanPoll time.Duration
	Clock      clock.Clock
	Logger     *slog.Logger
	Metrics    *metrics.Metrics
}

// Reaper runs the sweeps and follows fleet events.
type Reaper struct {
	store *jobstore.Store
	work  *queue.Queue
	o     Options
	log   *slog.Logger
	m     *metrics.Metrics

	view *fleetView

	run startstop.Group
}

// New returns a reaper over the job store and the work queue.
func New(store *jobstore.Store, workQ *queue.Queue, opts *Options) *Reaper {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.Policy.Lease == 0 {
		o.Policy = job.DefaultPolicy
	}
	if o.Sweep <= 0 {
		o.Sweep = 5 * time.Second
	}
	if o.Batch <= 0 {
		o.Batch = 500
	}
	if o.EventsWait <= 0 {
		o.EventsWait = queue.MaxWait
	}
	switch {
	case o.MaxRedrives == 0:
		o.MaxRedrives = DefaultMaxRedrives
	case o.MaxRedrives < 0:
		o.MaxRedrives = 0
	}
	o.Clock = clock.Or(o.Clock)
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Metrics == nil {
		o.Metrics = metrics.New()
	}
	return &Reaper{store: store, work: workQ, o: o, log: o.Logger, m: o.Metrics, view: newFleetView(o.Metrics)}
}

// Start runs the sweep loop and the event consumer until Stop or ctx ends.
func (r *Reaper) Start(ctx context.Context) error {
	loops := []func(context.Context){r.sweepLoop}
	if r.o.Events != nil {
		loops = append(loops, r.eventLoop)
	}
	return r.run.Start(ctx, "reaper", loops...)
}

// Stop stops the loops and waits for them. Safe twice and before Start.
func (r *Reaper) Stop() { r.run.Stop() }

func (r *Reaper) sweepLoop(ctx context.Context) {
	t := time.NewTicker(r.o.Sweep)
	defer t.Stop()
	for {
		res, err := r.Sweep(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			r.log.Error("sweep", "err", err)
		case res.Any():
			r.log.Info("sweep", "reclaimed", res.Reclaimed, "timed_out", res.TimedOut, "resent", res.Resent,
				"promoted", res.Promoted, "expired", res.Expired, "dead_lettered", res.DeadLettered, "redriven", res.Redriven, "purged", res.Purged)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// SweepResult counts what one pass did.
type SweepResult struct {
	Reclaimed    int // RUNNING with an expired lease, settled
	TimedOut     int // RUNNING past its deadline, settled
	Resent       int // QUEUED past the resend deadline, message re-sent
	Expired      int // QUEUED past the start deadline, failed
	Promoted     int // SCHEDULED → QUEUED
	DeadLettered int // DLQ messages turned into FAILED jobs
	Redriven     int // DLQ messages of never-started jobs: resend brought forward
	Purged       int // expired terminal records deleted
}

// Any reports whether the pass did anything.
func (s SweepResult) Any() bool { return s != SweepResult{} }

// Sweep runs one pass of every sweep. It carries on past a failing step and
// returns the first error.
func (r *Reaper) Sweep(ctx context.Context) (SweepResult, error) {
	var res SweepResult
	var errs []error
	step := func(name string, fn func(context.Context, *SweepResult) error) {
		start := time.Now()
		if err := fn(ctx, &res); err != nil {
			r.m.Errors.WithLabelValues("reaper", name).Inc()
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		}
		r.m.SweepDuration.WithLabelValues(name).Observe(time.Since(start).Seconds())
	}
	step("running", r.sweepRunning)
	step("queued", r.sweepQueued)
	step("scheduled", r.sweepScheduled)
	step("dead_letters", r.sweepDeadLetters)
	step("purge", r.purge)
	return res, errors.Join(errs...)
}

// sweepRunning settles running jobs past their due time.
func (r *Reaper) sweepRunning(ctx context.Context, res *SweepResult) error {
	now := r.o.Clock.Now()
	jobs, err := r.store.Due(ctx, job.Running, now, r.o.Batch)
	if err != nil {
		return err
	}
	var changes []job.Change
	var reasons []job.Outcome
	for _, j := range jobs {
		switch {
		case !j.Deadline().IsZero() && !now.Before(j.Deadline()):
			changes = append(changes, r.o.Policy.Reclaim(j, now, job.End{
				Outcome: job.OutcomeTimeout, Reason: fmt.Sprintf("ran past its timeout of %s (owner %s)", j.Timeout, j.Owner),
			}))
			reasons = append(reasons, job.OutcomeTimeout)
		case job.LeaseExpired(j, now):
			changes = append(changes, r.o.Policy.Reclaim(j, now, job.End{
				Outcome: job.OutcomeLeaseExpired, Reason: fmt.Sprintf("lease of %s expired at %s", j.Owner, j.LeaseUntil.Format(time.RFC3339Nano)),
			}))
			reasons = append(reasons, job.OutcomeLeaseExpired)
		}
	}
	won, err := r.apply(ctx, changes, func(i int, n *job.Job) {
		r.m.Reclaims.WithLabelValues(string(reasons[i])).Inc()
		if reasons[i] == job.OutcomeTimeout {
			res.TimedOut++
		} else {
			res.Reclaimed++
		}
		r.log.Info("reclaimed", "job_id", n.ID, "attempt", n.Attempt, "reason", reasons[i], "status", n.Status)
	})
	// The winners' messages go out even when other entries failed.
	r.enqueue(ctx, won, now)
	return err
}

// sweepQueued re-sends messages of queued jobs past their resend deadline.
func (r *Reaper) sweepQueued(ctx context.Context, res *SweepResult) error {
	now := r.o.Clock.Now()
	jobs, err := r.store.Due(ctx, job.Queued, now, r.o.Batch)
	if err != nil {
		return err
	}
	changes := make([]job.Change, len(jobs))
	for i, j := range jobs {
		if j.CancelRequested {
			// Asked to cancel while it ran, and re-queued before its owner
			// saw it (a retry or hand-back): cancel it now.
			changes[i], _ = r.o.Policy.RequestCancel(j, now)
			continue
		}
		if j.StartOverdue(now) {
			reason := fmt.Sprintf("provisioner: not started within %s of run_at", j.StartBy.Sub(j.RunAt))
			if j.Detail != "" {
				reason += " (" + j.Detail + ")"
			}
			changes[i] = r.o.Policy.Expire(j, now, reason)
			continue
		}
		changes[i] = r.o.Policy.Resend(j, now)
	}
	won, err := r.apply(ctx, changes, func(i int, n *job.Job) {
		if changes[i].Event == job.EventCancel {
			r.log.Info("cancelled a re-queued job whose cancel was pending", "job_id", n.ID)
			return
		}
		if changes[i].Event == job.EventExpire {
			res.Expired++
			r.log.Warn("job failed: start deadline passed", "job_id", n.ID, "reason", n.Error)
			return
		}
		r.m.Resends.Inc()
		res.Resent++
		r.log.Info("re-sending work message", "job_id", n.ID, "attempt", n.Attempt, "resends", n.Resends)
	})
	// The winners' messages go out even when other entries failed.
	r.enqueue(ctx, won, now)
	return err
}

// sweepScheduled moves scheduled jobs near their run_at to the queue.
func (r *Reaper) sweepScheduled(ctx context.Context, res *SweepResult) error {
	now := r.o.Clock.Now()
	jobs, err := r.store.Due(ctx, job.Scheduled, now, r.o.Batch)
	if err != nil {
		return err
	}
	changes := make([]job.Change, len(jobs))
	for i, j := range jobs {
		changes[i] = r.o.Policy.Promote(j, now)
	}
	won, err := r.apply(ctx, changes, func(_ int, n *job.Job) {
		r.m.Promotions.Inc()
		res.Promoted++
	})
	// The winners' messages go out even when other entries failed.
	r.enqueue(ctx, won, now)
	return err
}

// apply performs changes; for each winner it calls onWin and collects the
// jobs left QUEUED (to enqueue). Losers lost a race with a worker or
// another reaper, which is fine.
func (r *Reaper) apply(ctx context.Context, changes []job.Change, onWin func(i int, n *job.Job)) ([]*job.Job, error) {
	if len(changes) == 0 {
		return nil, nil
	}
	res, err := r.store.Apply(ctx, changes...)
	if err != nil {
		return nil, err
	}
	var queued []*job.Job
	var errs []error
	for i, cr := range res {
		switch {
		case cr.Err == nil:
			onWin(i, cr.Job)
			if cr.Job.Status == job.Queued {
				queued = append(queued, cr.Job)
			}
		case errors.Is(cr.Err, errcode.FailedPrecondition), errors.Is(cr.Err, errcode.NotFound):
			// Someone else moved it first.
		default:
			errs = append(errs, fmt.Errorf("%s job %s: %w", changes[i].Event, changes[i].ID, cr.Err))
		}
	}
	return queued, errors.Join(errs...)
}

// enqueue sends work messages for jobs the reaper left QUEUED. A failure is
// logged: the job's resend deadline brings it back to this sweep.
func (r *Reaper) enqueue(ctx context.Context, jobs []*job.Job, now time.Time) {
	r.enqueueLater(ctx, jobs, now, 0)
}

func (r *Reaper) enqueueLater(ctx context.Context, jobs []*job.Job, now time.Time, extra time.Duration) {
	errs, err := work.EnqueueLater(ctx, r.work, now, extra, jobs...)
	if err != nil {
		r.m.Errors.WithLabelValues("reaper", "send").Inc()
		r.log.Warn("send work messages; will retry at the resend deadline", "n", len(jobs), "err", err)
		return
	}
	for i, e := range errs {
		if e != nil {
			r.m.Errors.WithLabelValues("reaper", "send").Inc()
			r.log.Warn("send work message; will retry at the resend deadline", "job_id", jobs[i].ID, "err", e)
		}
	}
}

// DefaultMaxRedrives is Options.MaxRedrives's default: with the resend
// intervals between them (up to an hour), about ten hours of a start that
// keeps being refused.
const DefaultMaxRedrives = 10

// sweepDeadLetters handles dead-lettered work messages (see the package
// doc): a message is deleted from the DLQ once handled.
func (r *Reaper) sweepDeadLetters(ctx context.Context, res *SweepResult) error {
	if r.o.WorkDLQ == nil {
		return nil
	}
	for handled := 0; handled < r.o.Batch; {
		msgs, err := r.o.WorkDLQ.Receive(ctx, queue.ReceiveOptions{Max: queue.MaxBatch, Visibility: time.Minute})
		if err != nil {
			return err
		}
		if len(msgs) == 0 {
			return nil
		}
		var done []string
		for _, m := range msgs {
			handled++
			if err := r.deadLetter(ctx, m, res); err != nil {
				if !errors.Is(err, errJobMoved) {
					r.log.Warn("dead letter", "message_id", m.ID, "err", err)
				}
				continue // try again next pass
			}
			done = append(done, m.Handle)
		}
		if _, err := r.o.WorkDLQ.Delete(ctx, done...); err != nil {
			return err
		}
	}
	return nil
}

// errJobMoved: a write lost its condition while the job is still at the
// dead letter's attempt (another reaper, a note): the dead letter stays for
// the next pass, which reads the job again.
var errJobMoved = errors.New("the job changed meanwhile")

// deadLetter handles one DLQ message whose job is still QUEUED at the
// message's attempt (any other message was stale): it brings the job's
// resend forward, or fails the job with the reason. An error leaves the
// message for the next pass.
func (r *Reaper) deadLetter(ctx context.Context, m *queue.Message, res *SweepResult) error {
	r.m.DeadLetters.WithLabelValues(r.o.WorkDLQ.Name()).Inc()
	jm, err := job.DecodeMessage(m.Body)
	if err != nil {
		r.log.Error("undecodable dead letter dropped", "message_id", m.ID, "reason", m.Attributes["reason"], "err", err)
		return nil
	}
	j, err := r.store.Get(ctx, jm.ID)
	if errors.Is(err, errcode.NotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if j.Status != job.Queued || j.Attempt != jm.Attempt {
		return nil // the message was stale; the job lives on
	}
	now := r.o.Clock.Now()
	// The receive count runs across queues: this receive is one of them.
	receives := m.ReceiveCount - 1
	reason := "work message moved to the dead-letter queue after " + strconv.Itoa(receives) + " receives without starting"
	why := m.Attributes["reason"]
	if why == "" && j.DeadLetters < r.o.MaxRedrives && !j.CancelRequested {
		n, err := r.store.ApplyOne(ctx, r.o.Policy.Redrive(j, now, reason+"; sent again"))
		if errors.Is(err, errcode.FailedPrecondition) {
			return errJobMoved
		}
		if err != nil {
			return err
		}
		r.m.Redrives.Inc()
		res.Redriven++
		r.log.Warn("work message dead-lettered without starting its job; the resend sweep sends it again",
			"job_id", n.ID, "attempt", n.Attempt, "receives", receives, "dead_letters", n.DeadLetters, "resend_at", n.ResendAt)
		return nil
	}
	switch {
	case why != "":
		reason = "work message dead-lettered by a worker: " + why
	case j.DeadLetters > 0:
		reason += " (sent again " + strconv.Itoa(j.DeadLetters) + " times)"
	}
	var change job.Change
	if c, ok := r.o.Policy.RequestCancel(j, now); ok && j.CancelRequested {
		change = c // asked to cancel: that, rather than a failure
	} else {
		change = r.o.Policy.DeadLetter(j, now, reason)
	}
	n, err := r.store.ApplyOne(ctx, change)
	if errcode.Of(err) == errcode.InvalidArgument && change.Event == job.EventDeadLetter {
		// The store refuses the record with the reason (too large?): fail
		// the job with a short one rather than keep the dead letter forever.
		r.log.Error("fail dead-lettered job with its reason", "job_id", j.ID, "err", err)
		n, err = r.store.ApplyOne(ctx, r.o.Policy.DeadLetter(j, now, "work message dead-lettered"))
	}
	if errors.Is(err, errcode.FailedPrecondition) {
		return errJobMoved
	}
	if err != nil {
		return err
	}
	if change.Event != job.EventDeadLetter {
		r.log.Info("cancelled a dead-lettered job whose cancel was pending", "job_id", n.ID)
		return nil
	}
	res.DeadLettered++
	r.log.Warn("job failed: dead-lettered", "job_id", n.ID, "attempt", n.Attempt, "reason", reason)
	return nil
}

func (r *Reaper) purge(ctx context.Context, res *SweepResult) error {
	p, ok := r.store.Driver().(Purger)
	if !ok {
		return nil
	}
	n, err := p.Purge(ctx, r.o.Clock.Now(), r.o.Batch)
	res.Purged += n
	return err
}
