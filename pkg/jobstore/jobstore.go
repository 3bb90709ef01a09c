// Package jobstore is the job store port: where job records live and where
// every state change is a conditional write.
//
// Store is the portable type the services use; it validates what it is
// given (every Change must be an edge of job.Transitions), splits large
// batches, hides records past their retention, and delegates to a Driver.
// Adapters implement Driver, one package each: sqlitejobstore (embedded
// profile) and dynamojobstore (aws profile). The conformance suite in
// jobstore/storetest pins down the semantics every Driver must have; each
// adapter runs it unchanged.
//
// # Contract
//
//   - Create stores new jobs; a job with a key claims the key in the same
//     atomic write, and at most one active (SCHEDULED, QUEUED, RUNNING) job
//     holds a key. A create that finds the id or the key taken fails that
//     entry with errcode.AlreadyExists and names the holder.
//   - Apply performs job.Changes: each is one atomic conditional write. When
//     the condition holds the patch is applied and the new record returned;
//     when it does not, the entry fails with errcode.FailedPrecondition and
//     the record as found (the writer lost a race and must not act as if it
//     won); a missing job is errcode.NotFound. A change that makes a keyed
//     job terminal releases the key in the same atomic write.
//   - Entries of one batch are independent: a batch is not a transaction.
//   - Due, Owned and List read indexes, never scan the table; they may lag
//     writes by a moment (DynamoDB global secondary indexes are eventually
//     consistent), so callers re-check what they read with a conditional
//     write. Owned may read every RUNNING job's index entry to find one
//     owner's (DynamoDB does: it is called once per stopped worker).
//   - Get is strongly consistent: it sees every acknowledged write.
//
// All methods are safe for concurrent use, from several processes sharing
// one backend. They block until the backend answers or ctx ends; they do not
// retry beyond what the backend's client already does.
package jobstore

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/jobfleet/jobfleet/pkg/clock"
	"github.com/jobfleet/jobfleet/pkg/errcode"
	"github.com/jobfleet/jobfleet/pkg/job"
)

// MaxBatch is the most entries a Driver is given in one Create or Apply
// call; Store splits larger batches.
const MaxBatch = 100

// MaxListLimit is the most jobs one List, Due or Owned call returns.
const MaxListLimit = 1000

// Driver is what an adapter implements. Store validates input before it
// reaches a Driver: ids are valid ULIDs, batches hold 1..MaxBatch entries,
// changes are legal transitions, limits are within 1..MaxListLimit.
type Driver interface {
	// Create stores jobs (new records: status QUEUED or SCHEDULED, Rev 1).
	// Results are in the order of jobs. An entry whose id exists, or whose
	// key is held by an active job (including one created earlier in the
	// same batch), fails with errcode.AlreadyExists and names the holder.
	// The returned error is for the call as a whole.
	Create(ctx context.Context, jobs []*job.Job) ([]CreateResult, error)

	// Get returns the job with id, or errcode.NotFound.
	Get(ctx context.Context, id string) (*job.Job, error)

	// Apply performs each change as one atomic conditional write (see the
	// package doc). Results are in the order of changes.
	Apply(ctx context.Context, changes []job.Change) ([]ChangeResult, error)

	// Due returns up to limit jobs in status whose DueAt is before `before`,
	// earliest first.
	Due(ctx context.Context, status job.Status, before time.Time, limit int) ([]*job.Job, error)

	// Owned returns up to limit RUNNING jobs whose owner is owner.
	Owned(ctx context.Context, owner string, limit int) ([]*job.Job, error)

	// List returns jobs matching q, newest first (by id), one page at a
	// time. Page.Next is the cursor for the next page, "" after the last.
	List(ctx context.Context, q ListQuery) (Page, error)

	// Close releases the driver's resources. Calls after Close fail with
	// errcode.Closed.
	Close() error
}

// CreateResult is the outcome of one created job.
type CreateResult struct {
	// Err is nil when the job was stored; errcode.AlreadyExists when its id
	// or key is taken (see Holder); else why it failed.
	Err error
	// Holder is the id of the job holding the id or key (on AlreadyExists):
	// equal to the new job's id when the id itself was taken.
	Holder string
	// HolderPayloadHash is the holder's PayloadHash, so a caller can tell a
	// duplicate submission from a conflicting one without reading it.
	HolderPayloadHash string
}

// ChangeResult is the outcome of one change.
type ChangeResult struct {
	// Job is the record after the change on success, and the record as
	// found when the condition failed.
	Job *job.Job
	// Err is nil, errcode.FailedPrecondition (condition failed),
	// errcode.NotFound, or another error.
	Err error
}

// ListQuery filters List. Zero fields do not filter.
type ListQuery struct {
	Status job.Status
	Type   string
	Limit  int    // 1..MaxListLimit; 0 means 100
	Cursor string // from Page.Next
}

// Page is one page of List.
type Page struct {
	Jobs []*job.Job
	Next string
}

// Store is the portable job store.
type Store struct {
	d      Driver
	clock  clock.Clock
	closed atomic.Bool
}

// Options configure a Store. Nil options mean defaults.
type Options struct {
	Clock clock.Clock // for hiding records past retention; default real time
}

// New returns a Store over d.
func New(d Driver, opts *Options) *Store {
	if opts == nil {
		opts = &Options{}
	}
	return &Store{d: d, clock: clock.Or(opts.Clock)}
}

// Driver returns the adapter under s (for adapter-specific calls in tests).
func (s *Store) Driver() Driver { return s.d }

func (s *Store) check() error {
	if s.closed.Load() {
		return errcode.New(errcode.Closed, "job store is closed")
	}
	return nil
}

// Create stores new jobs; see Driver.Create. Any number of jobs may be
// given; they are written in batches of MaxBatch.
func (s *Store) Create(ctx context.Context, jobs ...*job.Job) ([]CreateResult, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	for _, j := range jobs {
		if err := validNew(j); err != nil {
			return nil, err
		}
	}
	out := make([]CreateResult, 0, len(jobs))
	for start := 0; start < len(jobs); start += MaxBatch {
		part := jobs[start:min(start+MaxBatch, len(jobs))]
		res, err := s.d.Create(ctx, part)
		if err != nil {
			return nil, err
		}
		if len(res) != len(part) {
			return nil, errcode.New(errcode.Internal, "job store driver returned %d results for %d jobs", len(res), len(part))
		}
		out = append(out, res...)
	}
	return out, nil
}

func validNew(j *job.Job) error {
	switch {
	case j == nil:
		return errcode.New(errcode.InvalidArgument, "create job: nil job")
	case !job.ValidID(j.ID):
		return errcode.New(errcode.InvalidArgument, "create job: invalid id %q", j.ID)
	case !job.Allowed(job.EventSubmit, job.None, j.Status):
		return errcode.New(errcode.InvalidArgument, "create job %s: a new job cannot be %s", j.ID, j.Status)
	case j.Rev != 1 || j.Attempt != 0:
		return errcode.New(errcode.InvalidArgument, "create job %s: a new job has rev 1 and attempt 0", j.ID)
	case !job.ValidType(j.Type):
		return errcode.New(errcode.InvalidArgument, "create job %s: invalid type %q", j.ID, j.Type)
	}
	return nil
}

// Get returns the job with id, or errcode.NotFound (also for a malformed id
// and for a terminal record past its retention).
func (s *Store) Get(ctx context.Context, id string) (*job.Job, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	if !job.ValidID(id) {
		return nil, errcode.New(errcode.NotFound, "job %q not found (not a job id)", id)
	}
	j, err := s.d.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	if s.expired(j) {
		return nil, errcode.New(errcode.NotFound, "job %s not found (expired)", id)
	}
	return j, nil
}

func (s *Store) expired(j *job.Job) bool {
	return !j.ExpiresAt.IsZero() && j.ExpiresAt.Before(s.clock.Now())
}

// Apply performs changes; see Driver.Apply. Any number may be given.
func (s *Store) Apply(ctx context.Context, changes ...job.Change) ([]ChangeResult, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	for _, c := range changes {
		if err := c.Validate(); err != nil {
			return nil, errcode.Wrap(errcode.InvalidArgument, err, "apply")
		}
	}
	out := make([]ChangeResult, 0, len(changes))
	for start := 0; start < len(changes); start += MaxBatch {
		part := changes[start:min(start+MaxBatch, len(changes))]
		res, err := s.d.Apply(ctx, part)
		if err != nil {
			return nil, err
		}
		if len(res) != len(part) {
			return nil, errcode.New(errcode.Internal, "job store driver returned %d results for %d changes", len(res), len(part))
		}
		out = append(out, res...)
	}
	return out, nil
}

// ApplyOne performs one change and returns the resulting record (or the
// record as found, with a FailedPrecondition error).
func (s *Store) ApplyOne(ctx context.Context, c job.Change) (*job.Job, error) {
	res, err := s.Apply(ctx, c)
	if err != nil {
		return nil, err
	}
	if res[0].Err != nil {
		return res[0].Job, fmt.Errorf("%s job %s: %w", c.Event, c.ID, res[0].Err)
	}
	return res[0].Job, nil
}

// Due returns up to limit jobs in status whose DueAt is before `before`.
func (s *Store) Due(ctx context.Context, status job.Status, before time.Time, limit int) ([]*job.Job, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	if !status.Active() {
		return nil, errcode.New(errcode.InvalidArgument, "due jobs: status %q is never due", status)
	}
	return s.d.Due(ctx, status, before, clampLimit(limit))
}

// Owned returns up to limit RUNNING jobs owned by owner.
func (s *Store) Owned(ctx context.Context, owner string, limit int) ([]*job.Job, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	if owner == "" {
		return nil, errcode.New(errcode.InvalidArgument, "owned jobs: empty owner")
	}
	return s.d.Owned(ctx, owner, clampLimit(limit))
}

// List returns one page of jobs matching q, newest first.
func (s *Store) List(ctx context.Context, q ListQuery) (Page, error) {
	if err := s.check(); err != nil {
		return Page{}, err
	}
	if q.Status != job.None && !q.Status.Valid() {
		return Page{}, errcode.New(errcode.InvalidArgument, "list jobs: unknown status %q", q.Status)
	}
	if q.Limit < 0 || q.Limit > MaxListLimit {
		return Page{}, errcode.New(errcode.InvalidArgument, "list jobs: limit must be 1..%d", MaxListLimit)
	}
	q.Limit = clampLimit(q.Limit)
	p, err := s.d.List(ctx, q)
	if err != nil {
		return Page{}, err
	}
	kept := p.Jobs[:0]
	for _, j := range p.Jobs {
		if !s.expired(j) {
			kept = append(kept, j)
		}
	}
	p.Jobs = kept
	return p, nil
}

func clampLimit(n int) int {
	switch {
	case n <= 0:
		return 100
	case n > MaxListLimit:
		return MaxListLimit
	}
	return n
}

// Close closes the driver. It is safe to call more than once.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	return s.d.Close()
}

// ConditionFailed is the error of a change whose condition did not hold:
// errcode.FailedPrecondition, saying what the writer expected and what the
// store found. Adapters return it with the record as found.
func ConditionFailed(c job.Change, found *job.Job) error {
	want := ""
	if c.If.Owner != "" {
		want += fmt.Sprintf(" owner %q", c.If.Owner)
	}
	if !c.If.LeaseExpiredBefore.IsZero() {
		want += " lease expired before " + c.If.LeaseExpiredBefore.UTC().Format(time.RFC3339Nano)
	}
	if c.If.Rev != 0 {
		want += fmt.Sprintf(" rev %d", c.If.Rev)
	}
	return errcode.New(errcode.FailedPrecondition,
		"%s job %s: condition failed: want status %s attempt %d%s, found status %s attempt %d owner %q rev %d",
		c.Event, c.ID, c.If.Status, c.If.Attempt, want, found.Status, found.Attempt, found.Owner, found.Rev)
}
