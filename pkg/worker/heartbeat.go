package worker

import (
	"context"
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
			// A tick's calls are bounded by the interval: a hung call must
			// not stop the worker from giving up jobs whose lease runs out.
			ctx, cancel := context.WithTimeout(w.runCtx, w.o.Heartbeat)
			w.heartbeat(ctx)
			cancel()
		}
	}
}

// heartbeat renews the leases of all running jobs in one batched write and
// extends their messages' visibility in batched calls.
func (w *Worker) heartbeat(ctx context.Context) {
	runs := w.snapshot()
	if len(runs) == 0 {
		return
	}
	now := w.o.Clock.Now()
	changes := make([]job.Change, len(runs))
	progress := make([][]byte, len(runs))
	for i, r := range runs {
		r.mu.Lock()
		progress[i], r.progress = r.progress, nil
		changes[i] = w.o.Policy.Renew(r.cur, now, progress[i])
		r.mu.Unlock()
	}
	res, err := w.store.Apply(ctx, changes...)
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
		switch RenewalResult(rerr, r.cur, now, w.o.Heartbeat) {
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
	w.extendVisibility(ctx, runs, now)
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
