package worker

import (
	"context"
	"sync"
	"time"

	"github.com/jobfleet/jobfleet/pkg/job"
	"github.com/jobfleet/jobfleet/pkg/queue"
)

// heartbeatLoop renews every running job's lease and message each
// Heartbeat, until the run context ends (after the last job committed).
func (w *Worker) heartbeatLoop() {
	defer w.bgWG.Done()
	t := time.NewTicker(w.o.Heartbeat)
	defer t.Stop()
	for {
		select {
		case <-w.runCtx.Done():
			return
		case <-t.C:
			w.heartbeat(w.runCtx)
		}
	}
}

// heartbeat renews the leases of all running jobs in one batched write and,
// at the same time, extends their messages' visibility in batched calls.
//
// Both calls may take until one interval before the earliest of the
// leases runs out (at least half an interval): a slow store still renews a
// lease in time, and a hung call cannot keep the worker from giving up,
// before their lease runs out, the jobs it could not renew (RenewalResult).
// Ticks missed meanwhile are dropped, not queued.
func (w *Worker) heartbeat(ctx context.Context) {
	runs := w.snapshot()
	if len(runs) == 0 {
		return
	}
	now := w.o.Clock.Now()
	changes := make([]job.Change, len(runs))
	progress := make([][]byte, len(runs))
	earliest := time.Time{}
	for i, r := range runs {
		r.mu.Lock()
		progress[i], r.progress = r.progress, nil
		changes[i] = w.o.Policy.Renew(r.cur, now, progress[i])
		if earliest.IsZero() || r.cur.LeaseUntil.Before(earliest) {
			earliest = r.cur.LeaseUntil
		}
		r.mu.Unlock()
	}
	ctx, cancel := context.WithTimeout(ctx, max(w.o.Heartbeat/2, earliest.Sub(now)-w.o.Heartbeat))
	defer cancel()
	var vis sync.WaitGroup
	vis.Go(func() { w.extendVisibility(ctx, runs, now) })
	defer vis.Wait()
	res, err := w.store.Apply(ctx, changes...)
	// Whether a lease whose renewal went unanswered is lost depends on
	// the time after the call.
	after := w.o.Clock.Now()
	if err != nil {
		w.m.Errors.WithLabelValues("worker", "renew").Inc()
		w.log.Warn("renew leases", "n", len(runs), "err", err)
	}
	for i, r := range runs {
		var rerr error
		switch {
		case err != nil:
			rerr = err
		default:
			rerr = res[i].Err
		}
		r.mu.Lock()
		switch RenewalResult(rerr, r.cur, after, w.o.Heartbeat) {
		case Renewed:
			r.cur = res[i].Job
			if r.cur.CancelRequested {
				r.cancel(ErrCancelRequested)
			}
		case RenewalUnknown:
			// Keep the progress for the next try.
			if r.progress == nil {
				r.progress = progress[i]
			}
		case LeaseLost:
			r.lost = true
			r.cancel(ErrLeaseLost)
		}
		r.mu.Unlock()
	}
}

// extendVisibility pushes each live message's visibility out by Visibility.
// A message that would pass SQS's 12-hour cap is deleted instead: the job
// goes on under its lease alone, and if its owner dies the reaper re-queues
// it with a new message.
func (w *Worker) extendVisibility(ctx context.Context, runs []*run, now time.Time) {
	var changes []queue.VisibilityChange
	var owners []*run
	var drop []*run
	for _, r := range runs {
		r.mu.Lock()
		deleted, lost := r.msgDeleted, r.lost
		r.mu.Unlock()
		if deleted || lost {
			continue
		}
		if NearVisibilityCap(r.receivedAt, now, w.o.Visibility, w.o.Heartbeat) {
			drop = append(drop, r)
			continue
		}
		changes = append(changes, queue.VisibilityChange{Handle: r.msg.Handle, Timeout: w.o.Visibility})
		owners = append(owners, r)
	}
	if len(changes) > 0 {
		errs, err := w.work.ChangeVisibility(ctx, changes...)
		if err != nil {
			w.m.Errors.WithLabelValues("worker", "change_visibility").Inc()
			w.log.Warn("extend visibility", "n", len(changes), "err", err)
		}
		for i, e := range errs {
			if e != nil {
				// The lease, not the message, fences the job; a message we
				// no longer hold is only redelivered as a stale one.
				w.log.Debug("extend visibility", "job_id", owners[i].job().ID, "err", e)
			}
		}
	}
	for _, r := range drop {
		w.log.Info("message near the visibility cap; continuing on the lease alone", "job_id", r.job().ID)
		w.deleteMessage(r.msg)
		r.mu.Lock()
		r.msgDeleted = true
		r.mu.Unlock()
	}
}
