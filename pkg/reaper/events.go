package reaper

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jobfleet/jobfleet/pkg/errcode"
	"github.com/jobfleet/jobfleet/pkg/fleet"
	"github.com/jobfleet/jobfleet/pkg/job"
	"github.com/jobfleet/jobfleet/pkg/queue"
)

func (r *Reaper) eventLoop(ctx context.Context) {
	for ctx.Err() == nil {
		if _, err := r.PollEvents(ctx); err != nil && ctx.Err() == nil {
			r.m.Errors.WithLabelValues("reaper", "events").Inc()
			r.log.Error("fleet events", "err", err)
			sleep(ctx, time.Second)
		}
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

// EventResult counts what one PollEvents call did.
type EventResult struct {
	Events    int // events read
	Malformed int // sent to the events DLQ
	Reclaimed int // jobs of stopped (or Spot-interrupted) workers settled
}

// PollEvents receives one batch of fleet events (waiting up to EventsWait)
// and handles it (see HandleEvent): a STOPPED or Spot-interrupted worker's
// jobs are reclaimed at once. An event is deleted once handled; one that
// failed to handle comes back later.
func (r *Reaper) PollEvents(ctx context.Context) (EventResult, error) {
	var res EventResult
	msgs, err := r.o.Events.Receive(ctx, queue.ReceiveOptions{Max: queue.MaxBatch, Wait: r.o.EventsWait, Visibility: time.Minute})
	if err != nil || len(msgs) == 0 {
		return res, err
	}
	var done []string
	var errs []error
	for _, m := range msgs {
		res.Events++
		e, err := fleet.ParseEvent(m.Body)
		if err != nil {
			res.Malformed++
			if !r.rejectEvent(ctx, m, err) {
				continue
			}
			done = append(done, m.Handle)
			continue
		}
		n, err := r.HandleEvent(ctx, e)
		res.Reclaimed += n
		if err != nil {
			errs = append(errs, err)
			continue
		}
		done = append(done, m.Handle)
	}
	if len(done) > 0 {
		if _, err := r.o.Events.Delete(ctx, done...); err != nil {
			errs = append(errs, err)
		}
	}
	return res, errors.Join(errs...)
}

// rejectEvent moves a malformed event to the events DLQ with the reason; it
// reports whether the original may be deleted.
func (r *Reaper) rejectEvent(ctx context.Context, m *queue.Message, why error) bool {
	r.log.Warn("malformed fleet event", "message_id", m.ID, "err", why)
	r.m.DeadLetters.WithLabelValues(r.o.Events.Name()).Inc()
	if r.o.EventsDLQ == nil {
		return true
	}
	reason := why.Error()
	if len(reason) > 1024 {
		reason = reason[:1024]
	}
	res, err := r.o.EventsDLQ.Send(ctx, queue.SendEntry{Body: m.Body, Attributes: map[string]string{"reason": reason}})
	if err == nil {
		err = res[0].Err
	}
	if err != nil {
		r.log.Error("dead-letter fleet event; leaving it for redrive", "err", err)
		return false
	}
	return true
}

// HandleEvent acts on one fleet event. When the worker has stopped, every
// job it still owns is reclaimed now (a crash or OOM spends an attempt; an
// interruption or scale-in does not) and the stop is counted by class.
//
// A Spot interruption notice (desired status STOPPED while the task still
// runs, about two minutes ahead of the stop) reclaims the worker's jobs at
// once too, without spending an attempt, so they start again elsewhere
// instead of waiting for the task to die. The worker is still running then:
// its writes are fenced (conditional on the status and attempt it
// started), and it finds its leases lost at its next heartbeat. Other stop
// requests (StopTask, scale-in) reclaim nothing while the task runs: the
// worker drains and hands its jobs back itself, and the STOPPED event
// settles whatever it left.
//
// Duplicate and out-of-order events (by detail.version) are skipped; the
// reclaim itself is idempotent too, so the STOPPED event after a notice
// finds nothing left to reclaim. It returns how many jobs it settled.
func (r *Reaper) HandleEvent(ctx context.Context, e fleet.Event) (int, error) {
	r.m.FleetEvents.WithLabelValues(e.LastStatus).Inc()
	if !r.view.fresh(e) {
		return 0, nil // a duplicate, or older than one already handled
	}
	var n int
	var err error
	switch class := fleet.Classify(e); {
	case e.Stopped():
		n, err = r.reclaim(ctx, e, class)
		if err == nil {
			r.m.FleetStops.WithLabelValues(string(class)).Inc()
		}
	case e.Stopping() && class == fleet.StopSpot:
		n, err = r.reclaim(ctx, e, class)
	}
	if err == nil {
		r.view.record(e, r.o.Clock.Now())
	}
	return n, err
}

// conflictRetries is how many more times a reclaim that lost to another
// write is tried from the record as found, while that record is still the
// worker's running attempt. A worker that was only told to stop still
// renews its leases, and the index Owned reads may lag those renewals.
const conflictRetries = 3

// reclaim reclaims every job the worker of a STOPPED event, or of a Spot
// notice, still owns.
func (r *Reaper) reclaim(ctx context.Context, e fleet.Event, class fleet.StopClass) (int, error) {
	outcome := job.OutcomeInterrupted
	if class.BlamesJob() {
		outcome = job.OutcomeTaskStopped
	}
	state, msg := "stopped", "reclaimed job of stopped worker"
	if !e.Stopped() {
		state, msg = "told to stop", "reclaimed job of interrupted worker"
	}
	reason := fmt.Sprintf("worker %s %s (%s)", e.WorkerID, state, class)
	if e.Reason != "" {
		reason += ": " + e.Reason
	}
	if e.ExitCode != nil {
		reason += fmt.Sprintf(" (exit code %d)", *e.ExitCode)
	}
	end := job.End{Outcome: outcome, Reason: reason}
	total := 0
	for {
		jobs, err := r.store.Owned(ctx, e.WorkerID, r.o.Batch)
		if err != nil {
			return total, fmt.Errorf("jobs of %s worker %s: %w", state, e.WorkerID, err)
		}
		var cur []*job.Job
		for _, j := range jobs {
			if j.Status == job.Running && j.Owner == e.WorkerID {
				cur = append(cur, j)
			}
		}
		before := total
		for try := 0; len(cur) > 0; try++ {
			now := r.o.Clock.Now()
			changes := make([]job.Change, len(cur))
			for i, j := range cur {
				changes[i] = r.o.Policy.Reclaim(j, now, end)
			}
			res, err := r.store.Apply(ctx, changes...)
			if err != nil {
				return total, err
			}
			var won, again []*job.Job
			var errs []error
			for i, cr := range res {
				switch {
				case cr.Err == nil:
					total++
					r.m.Reclaims.WithLabelValues(string(outcome)).Inc()
					r.log.Info(msg, "job_id", cr.Job.ID, "attempt", cr.Job.Attempt, "task_arn", e.WorkerID, "class", class, "status", cr.Job.Status)
					if cr.Job.Status == job.Queued {
						won = append(won, cr.Job)
					}
				case errors.Is(cr.Err, errcode.FailedPrecondition):
					// Written meanwhile: by its owner (a renewal, or the
					// attempt's end) or another reaper.
					if f := cr.Job; f != nil && f.Status == job.Running && f.Owner == e.WorkerID && f.Attempt == cur[i].Attempt && try < conflictRetries {
						again = append(again, f)
					}
				case errors.Is(cr.Err, errcode.NotFound):
				default:
					errs = append(errs, fmt.Errorf("%s job %s: %w", changes[i].Event, changes[i].ID, cr.Err))
				}
			}
			// The winners' messages go out even when other entries failed.
			r.enqueue(ctx, won, now)
			if r.o.OrphanPoll > 0 {
				r.enqueueLater(ctx, won, now, r.o.OrphanPoll)
			}
			if len(errs) > 0 {
				return total, errors.Join(errs...)
			}
			cur = again
		}
		if len(jobs) < r.o.Batch || total == before {
			return total, nil
		}
	}
}
