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
	Reclaimed int // jobs of stopped workers settled
}

// PollEvents receives one batch of fleet events (waiting up to EventsWait)
// and handles it: a STOPPED worker's jobs are reclaimed at once. An event
// is deleted once handled; one that failed to handle comes back later.
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

// HandleEvent acts on one fleet event: when the worker has stopped, every
// job it still owns is reclaimed now (a crash or OOM spends an attempt; an
// interruption or scale-in does not). It returns how many jobs it settled.
// Duplicate and out-of-order events (by detail.version) are skipped; the
// reclaim itself is idempotent too.
func (r *Reaper) HandleEvent(ctx context.Context, e fleet.Event) (int, error) {
	r.m.FleetEvents.WithLabelValues(e.LastStatus).Inc()
	if !r.view.fresh(e) {
		return 0, nil // a duplicate, or older than one already handled
	}
	if !e.Stopped() {
		r.view.record(e, r.o.Clock.Now())
		return 0, nil
	}
	n, err := r.reclaimStopped(ctx, e)
	if err == nil {
		r.view.record(e, r.o.Clock.Now())
	}
	return n, err
}

// reclaimStopped reclaims every job a stopped worker still owns.
func (r *Reaper) reclaimStopped(ctx context.Context, e fleet.Event) (int, error) {
	class := fleet.Classify(e)
	r.m.FleetStops.WithLabelValues(string(class)).Inc()
	outcome := job.OutcomeInterrupted
	if class.BlamesJob() {
		outcome = job.OutcomeTaskStopped
	}
	reason := fmt.Sprintf("worker %s stopped (%s)", e.WorkerID, class)
	if e.Reason != "" {
		reason += ": " + e.Reason
	}
	if e.ExitCode != nil {
		reason += fmt.Sprintf(" (exit code %d)", *e.ExitCode)
	}
	total := 0
	for {
		jobs, err := r.store.Owned(ctx, e.WorkerID, r.o.Batch)
		if err != nil {
			return total, fmt.Errorf("jobs of stopped worker %s: %w", e.WorkerID, err)
		}
		now := r.o.Clock.Now()
		var changes []job.Change
		for _, j := range jobs {
			if j.Status == job.Running && j.Owner == e.WorkerID {
				changes = append(changes, r.o.Policy.Reclaim(j, now, job.End{Outcome: outcome, Reason: reason}))
			}
		}
		before := total
		won, err := r.apply(ctx, changes, func(_ int, n *job.Job) {
			total++
			r.m.Reclaims.WithLabelValues(string(outcome)).Inc()
			r.log.Info("reclaimed job of stopped worker", "job_id", n.ID, "attempt", n.Attempt, "task_arn", e.WorkerID, "class", class, "status", n.Status)
		})
		r.enqueue(ctx, won, now)
		if r.o.OrphanPoll > 0 {
			r.enqueueLater(ctx, won, now, r.o.OrphanPoll)
		}
		if err != nil && !errors.Is(err, errcode.FailedPrecondition) {
			return total, err
		}
		if len(jobs) < r.o.Batch || total == before {
			return total, nil
		}
	}
}
