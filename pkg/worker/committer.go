package worker

import (
	"context"
	"errors"
	"fmt"

	"github.com/jobfleet/jobfleet/pkg/errcode"
	"github.com/jobfleet/jobfleet/pkg/job"
	"github.com/jobfleet/jobfleet/pkg/jobstore"
	"github.com/jobfleet/jobfleet/pkg/queue"
	"github.com/jobfleet/jobfleet/pkg/work"
)

// finish is one attempt's outcome waiting to be committed.
type finish struct {
	change job.Change
	msg    *queue.Message // the received message to delete; nil when already deleted
	done   chan finished
}

type finished struct {
	job *job.Job
	err error
}

// commitLoop group-commits attempt outcomes: the outcomes that arrive while
// a batch is being written go into the next one — one Apply for their
// fenced writes, one Send for the next messages of re-queued jobs, one
// Delete for the received messages — instead of a transaction (or request)
// each. Each job's result is what writing it alone would have given: the
// writes are independent entries, and each job's steps keep their order
// (write, then next message, then delete). A lone outcome is written at
// once: nothing waits for a batch to fill.
func (w *Worker) commitLoop() {
	defer w.commitWG.Done()
	for {
		var batch []finish
		select {
		case f := <-w.finishes:
			batch = append(batch, f)
		case <-w.commitStop:
			return
		}
	collect:
		for len(batch) < jobstore.MaxBatch {
			select {
			case f := <-w.finishes:
				batch = append(batch, f)
			default:
				break collect
			}
		}
		w.commitBatch(batch)
	}
}

func (w *Worker) commitBatch(batch []finish) {
	ctx, cancel := w.commitCtx()
	defer cancel()
	changes := make([]job.Change, len(batch))
	for i, f := range batch {
		changes[i] = f.change
	}
	res, err := w.store.Apply(ctx, changes...)
	out := make([]finished, len(batch))
	var queued []*job.Job
	var handles []string
	for i, f := range batch {
		if err != nil {
			out[i].err = err
		} else {
			out[i] = finished{job: res[i].Job, err: res[i].Err}
		}
		if out[i].err != nil && !LostCondition(out[i].err) {
			// No answer: read the job to learn whether it landed.
			out[i] = w.resolveFinish(ctx, f.change, out[i].err)
		}
		switch {
		case out[i].err == nil:
			if out[i].job.Status == job.Queued {
				queued = append(queued, out[i].job)
			}
		case !LostCondition(out[i].err):
			// Still unknown: the lease expires and the reaper settles it;
			// the message is kept so it can be redelivered too.
			continue
		}
		if f.msg != nil {
			handles = append(handles, f.msg.Handle)
		}
	}
	if len(queued) > 0 {
		errs, err := work.Enqueue(ctx, w.work, w.o.Clock.Now(), queued...)
		if err == nil {
			err = errors.Join(errs...)
		}
		if err != nil {
			// The reaper re-sends them after their resend deadline.
			w.m.Errors.WithLabelValues("worker", "send").Inc()
			w.log.Warn("send work messages; the reaper will re-send them", "n", len(queued), "err", err)
		}
	}
	if len(handles) > 0 {
		errs, err := w.work.Delete(ctx, handles...)
		if err == nil {
			err = errors.Join(errs...)
		}
		if err != nil {
			w.m.Errors.WithLabelValues("worker", "delete").Inc()
			w.log.Warn("delete work messages", "n", len(handles), "err", err)
		}
	}
	for i, f := range batch {
		f.done <- out[i]
	}
}

// resolveFinish settles an outcome write c that got no answer (err) by
// reading the job (FinishResult): landed, written again, or lost. When the
// read fails too it stays unknown.
func (w *Worker) resolveFinish(ctx context.Context, c job.Change, err error) finished {
	j, gerr := w.store.Get(ctx, c.ID)
	if gerr != nil {
		if errors.Is(gerr, errcode.NotFound) {
			return finished{err: gerr}
		}
		return finished{err: err}
	}
	switch FinishResult(j, c) {
	case FinishLanded:
		return finished{job: j}
	case FinishRetry:
		n, err := w.store.ApplyOne(ctx, c)
		return finished{job: n, err: err}
	}
	return finished{err: fmt.Errorf("job %s: attempt %d ended by another writer: %w", c.ID, c.If.Attempt, errcode.FailedPrecondition)}
}

// commitFinish hands an outcome to the committer and waits for it.
func (w *Worker) commitFinish(c job.Change, msg *queue.Message) (*job.Job, error) {
	done := make(chan finished, 1)
	w.finishes <- finish{change: c, msg: msg, done: done}
	r := <-done
	return r.job, r.err
}
