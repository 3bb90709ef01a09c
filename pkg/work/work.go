// Package work is the queue side of the job protocol: the work message that
// tells a worker which job to start at which attempt, sent after every write
// that leaves a job QUEUED (submit, retry, hand-back, reclaim, promote,
// resend). The job store is the truth; a message only points at it, so a
// lost message is re-sent by the reaper and a duplicate is stale at start.
package work

import (
	"context"
	"time"

	"github.com/jobfleet/jobfleet/pkg/job"
	"github.com/jobfleet/jobfleet/pkg/queue"
)

// Enqueue sends the work message of each queued job, delayed until its
// RunAt, in batches. It returns one error per job (nil when sent) and an
// error for the call as a whole. Callers need not retry: a job whose
// message was not sent is re-sent by the reaper after its resend deadline.
func Enqueue(ctx context.Context, q *queue.Queue, now time.Time, jobs ...*job.Job) ([]error, error) {
	return EnqueueLater(ctx, q, now, 0, jobs...)
}

// EnqueueLater is Enqueue with each message held back extra longer (up to
// the queue's delay limit).
func EnqueueLater(ctx context.Context, q *queue.Queue, now time.Time, extra time.Duration, jobs ...*job.Job) ([]error, error) {
	if len(jobs) == 0 {
		return nil, nil
	}
	entries := make([]queue.SendEntry, len(jobs))
	for i, j := range jobs {
		entries[i] = Entry(j, now, extra)
	}
	res, err := q.Send(ctx, entries...)
	if err != nil {
		return nil, err
	}
	errs := make([]error, len(res))
	for i, r := range res {
		errs[i] = r.Err
	}
	return errs, nil
}

// Entry is the work message of a queued job as a send entry, delayed until
// its RunAt and extra longer (up to the queue's delay limit).
func Entry(j *job.Job, now time.Time, extra time.Duration) queue.SendEntry {
	return queue.SendEntry{
		Body:  job.Message{ID: j.ID, Attempt: j.Attempt}.Encode(),
		Delay: min(job.MessageDelay(j, now)+extra, queue.MaxDelay),
	}
}
