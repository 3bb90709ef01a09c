package invariant

import (
	"context"
	"time"

	"github.com/jobfleet/jobfleet/pkg/job"
	"github.com/jobfleet/jobfleet/pkg/jobstore"
)

// RecordDriver returns a jobstore.Driver that passes every call to d and
// records what d applied: a Created event per stored job, a Write event per
// change (accepted or refused), and a DeadLetter event per accepted
// dead-letter write. A call that fails as a whole records nothing (drivers
// apply nothing of such a call). Put it directly over the real driver, below
// any fault injection, so that it records what the store did rather than
// what a caller was told. Named leases (jobstore.Leaser) are forwarded, not
// recorded.
func RecordDriver(d jobstore.Driver, r *Recorder) jobstore.Driver {
	rd := &recordDriver{d: d, r: r}
	if l, ok := d.(jobstore.Leaser); ok {
		return recordLeaser{rd, l}
	}
	return rd
}

type recordDriver struct {
	d jobstore.Driver
	r *Recorder
}

var _ jobstore.Driver = (*recordDriver)(nil)

func (rd *recordDriver) Create(ctx context.Context, jobs []*job.Job) ([]jobstore.CreateResult, error) {
	res, err := rd.d.Create(ctx, jobs)
	if err != nil {
		return res, err
	}
	for i, cr := range res {
		if cr.Err == nil && i < len(jobs) {
			rd.r.Record(Event{Kind: Created, Job: jobs[i].ID, Key: jobs[i].Key, Status: jobs[i].Status, RunAt: jobs[i].RunAt})
		}
	}
	return res, nil
}

func (rd *recordDriver) Apply(ctx context.Context, changes []job.Change) ([]jobstore.ChangeResult, error) {
	res, err := rd.d.Apply(ctx, changes)
	if err != nil {
		return res, err
	}
	for i, cr := range res {
		if i >= len(changes) {
			break
		}
		c := changes[i]
		e := Event{Kind: Write, Job: c.ID, Event: c.Event, Attempt: c.If.Attempt, Owner: c.If.Owner, Accepted: cr.Err == nil}
		if c.Event == job.EventStart || c.Event == job.EventTakeover {
			e.Owner = c.Set.Values.Owner
		}
		if cr.Job != nil {
			e.Status = cr.Job.Status
			if e.Accepted {
				e.Result = Digest(cr.Job.Result, cr.Job.ResultRef)
				if cr.Job.Status.Terminal() {
					e.Reason = cr.Job.Error
				}
			}
		}
		rd.r.Record(e)
		if e.Accepted && c.Event == job.EventDeadLetter {
			rd.r.Record(Event{Kind: DeadLetter, Job: c.ID, Attempt: c.If.Attempt, Reason: c.Set.Values.Error})
		}
	}
	return res, nil
}

func (rd *recordDriver) Get(ctx context.Context, id string) (*job.Job, error) {
	return rd.d.Get(ctx, id)
}

func (rd *recordDriver) Due(ctx context.Context, status job.Status, before time.Time, limit int) ([]*job.Job, error) {
	return rd.d.Due(ctx, status, before, limit)
}

func (rd *recordDriver) Owned(ctx context.Context, owner string, limit int) ([]*job.Job, error) {
	return rd.d.Owned(ctx, owner, limit)
}

func (rd *recordDriver) List(ctx context.Context, q jobstore.ListQuery) (jobstore.Page, error) {
	return rd.d.List(ctx, q)
}

func (rd *recordDriver) Close() error { return rd.d.Close() }

// recordLeaser is a recordDriver over a driver that keeps named leases; it
// forwards them (they are not recorded).
type recordLeaser struct {
	*recordDriver
	jobstore.Leaser
}
