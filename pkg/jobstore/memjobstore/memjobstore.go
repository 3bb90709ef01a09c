// Package memjobstore is an in-memory jobstore.Driver for tests and the
// deterministic simulation (package sim), which runs thousands of seeded
// runs and needs a store that costs microseconds, not fsyncs. It is not a
// profile: nothing is persisted, and one Driver is one process's store.
//
// # Contract
//
// It implements the jobstore contract, passes jobstore/storetest, and
// mirrors sqlitejobstore (the embedded profile) as closely as memory allows:
//
//   - Each Create or Apply call is atomic under one lock: entries stay
//     independent (an entry that loses — id or key taken, condition failed,
//     job missing, record too large — writes nothing and is reported in its
//     result), and entries of one batch are applied in order, so a later
//     entry sees an earlier entry's write to the same job.
//   - A conditional write checks job.Cond.Holds on the stored record and
//     applies job.Patch.Apply to a copy, so the patch semantics are exactly
//     the job package's.
//   - At most one active (SCHEDULED, QUEUED, RUNNING) job holds a key: a key
//     is claimed by creating an active job and released by the write that
//     makes it terminal. A create that finds its id taken names the job with
//     that id as the holder (the id wins over the key), else the key holder.
//   - Records whose encoding (the JSON record without its raw fields, plus
//     the payload, progress and result bytes) exceeds MaxRecordBytes are
//     refused with errcode.InvalidArgument, as sqlitejobstore does for parity
//     with DynamoDB's 400 KB item limit.
//   - Due, Owned and List are strongly consistent. Due returns jobs whose
//     DueAt, truncated to the millisecond, is before `before` truncated to
//     the millisecond, earliest first (then by id); Owned returns a RUNNING
//     job's owner's jobs by id; List returns jobs newest first (by id), and
//     its cursor is the id of the last job of the previous page (anything
//     else is errcode.InvalidArgument).
//   - Times are kept in UTC at full precision; string fields that are not
//     valid UTF-8 have each bad byte replaced by U+FFFD (as a JSON
//     round trip does); raw JSON fields are kept byte for byte (empty ones
//     read back as nil). The history is kept as written.
//   - The store keeps its own copies: changing a job given to Create, or
//     returned by any call, changes nothing stored.
//   - Named leases (jobstore.Leaser) as in sqlitejobstore: taken when free,
//     expired (whole milliseconds) or held by the same holder.
//   - Errors: a failed condition is errcode.FailedPrecondition with the
//     record as found; a missing job errcode.NotFound; a taken id or key
//     errcode.AlreadyExists naming the holder; use after Close
//     errcode.Closed; a context that has ended before a call fails it
//     with the context's error (errcode.Canceled) and changes nothing.
//
// # Differences from DynamoDB (dynamojobstore) and SQLite (sqlitejobstore)
//
//   - Nothing survives the process. Several handles may share one Backend
//     (as processes share a SQLite file): Backend.Open; closing one leaves
//     the others working.
//   - Calls never wait for a backend: there is no busy or throttled state,
//     so errcode.Unavailable never happens (wrap it with faultjobstore to
//     inject such failures).
//   - Indexes never lag writes (DynamoDB's global secondary indexes do).
//   - Due, Owned and List scan every record (small test volumes); the real
//     adapters read indexes.
package memjobstore

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/jobfleet/jobfleet/pkg/clock"
	"github.com/jobfleet/jobfleet/pkg/errcode"
	"github.com/jobfleet/jobfleet/pkg/job"
	"github.com/jobfleet/jobfleet/pkg/jobstore"
)

// MaxRecordBytes is the largest encoded job record accepted: DynamoDB's item
// size limit (400 KB = 409,600 bytes), as in sqlitejobstore.
const MaxRecordBytes = 400 << 10

// Options configure New. Nil options mean defaults.
type Options struct {
	// Clock is the Store's clock, for hiding records past their retention;
	// default real time.
	Clock clock.Clock
}

// New returns a Store over a new, empty Backend.
func New(opts *Options) *jobstore.Store {
	return NewBackend().Open(opts)
}

// Backend holds the records that the handles opened on it share, as a
// SQLite file or a DynamoDB table is shared by the processes using it.
type Backend struct {
	mu     sync.Mutex
	jobs   map[string]*job.Job // by id; each the store's own copy
	ids    []string            // every id, ascending
	keys   map[string]string   // active key → holder id
	claims map[string]string   // holder id → the key it holds
	leases map[string]lease    // named leases, by name
}

// lease is a named lease: its holder until untilMS (Unix ms).
type lease struct {
	holder  string
	untilMS int64
}

// NewBackend returns an empty backend.
func NewBackend() *Backend {
	return &Backend{jobs: map[string]*job.Job{}, keys: map[string]string{}, claims: map[string]string{}, leases: map[string]lease{}}
}

// Open returns a Store over a new handle on b. Closing it closes that
// handle only.
func (b *Backend) Open(opts *Options) *jobstore.Store {
	var c clock.Clock
	if opts != nil {
		c = opts.Clock
	}
	return jobstore.New(b.Driver(), &jobstore.Options{Clock: c})
}

// Driver returns a new handle on b.
func (b *Backend) Driver() *Driver { return &Driver{b: b} }

// Len returns how many records b holds.
func (b *Backend) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.jobs)
}

// Driver is one handle on a Backend: a jobstore.Driver whose methods are
// safe for concurrent use.
type Driver struct {
	b      *Backend
	closed atomic.Bool
}

var _ jobstore.Driver = (*Driver)(nil)

// begin locks the backend and checks that the handle is open and ctx has
// not ended; on nil the caller must unlock (d.b.mu).
func (d *Driver) begin(ctx context.Context) (*Backend, error) {
	if d.closed.Load() {
		return nil, errcode.New(errcode.Closed, "job store is closed")
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	d.b.mu.Lock()
	return d.b, nil
}

// Create stores new jobs; see jobstore.Driver.
func (d *Driver) Create(ctx context.Context, jobs []*job.Job) ([]jobstore.CreateResult, error) {
	b, err := d.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer b.mu.Unlock()
	out := make([]jobstore.CreateResult, len(jobs))
	for i, in := range jobs {
		// As in sqlitejobstore: the size first, then the id (a retried
		// submission is the same job), then the key.
		j := own(in)
		if err := checkSize(j); err != nil {
			out[i].Err = err
			continue
		}
		if found, ok := b.jobs[j.ID]; ok {
			out[i] = taken(found, "create job %s: id exists", j.ID)
			continue
		}
		claims := in.Key != "" && j.Status.Active()
		if claims {
			if holder, ok := b.keys[in.Key]; ok {
				found := b.jobs[holder]
				out[i] = taken(found, "create job %s: key %q is held by job %s", j.ID, in.Key, found.ID)
				continue
			}
		}
		b.jobs[j.ID] = j
		if n := len(b.ids); n == 0 || b.ids[n-1] < j.ID {
			b.ids = append(b.ids, j.ID)
		} else {
			at, _ := slices.BinarySearch(b.ids, j.ID)
			b.ids = slices.Insert(b.ids, at, j.ID)
		}
		if claims {
			b.keys[in.Key] = j.ID
			b.claims[j.ID] = in.Key
		}
	}
	return out, nil
}

func taken(holder *job.Job, format string, args ...any) jobstore.CreateResult {
	return jobstore.CreateResult{
		Err:               errcode.New(errcode.AlreadyExists, format, args...),
		Holder:            holder.ID,
		HolderPayloadHash: holder.PayloadHash,
	}
}

// Get returns the job with id; see jobstore.Driver.
func (d *Driver) Get(ctx context.Context, id string) (*job.Job, error) {
	b, err := d.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer b.mu.Unlock()
	j, ok := b.jobs[id]
	if !ok {
		return nil, errcode.New(errcode.NotFound, "job %s not found", id)
	}
	return j.Clone(), nil
}

// Apply performs changes in order, each a conditional write; see
// jobstore.Driver.
func (d *Driver) Apply(ctx context.Context, changes []job.Change) ([]jobstore.ChangeResult, error) {
	b, err := d.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer b.mu.Unlock()
	out := make([]jobstore.ChangeResult, len(changes))
	for i, c := range changes {
		cur, ok := b.jobs[c.ID]
		if !ok {
			out[i].Err = errcode.New(errcode.NotFound, "%s job %s: not found", c.Event, c.ID)
			continue
		}
		if !c.If.Holds(cur) {
			out[i] = jobstore.ChangeResult{Job: cur.Clone(), Err: jobstore.ConditionFailed(c, cur)}
			continue
		}
		next := cur.Clone()
		c.Set.Apply(next)
		normalize(next)
		if err := checkSize(next); err != nil {
			out[i].Err = fmt.Errorf("%s job %s: %w", c.Event, c.ID, err)
			continue
		}
		if next.Key != "" && !cur.Status.Active() && next.Status.Active() {
			// No legal transition makes an inactive job active.
			out[i].Err = errcode.New(errcode.Internal, "%s job %s: %s → %s would re-activate it", c.Event, c.ID, cur.Status, next.Status)
			continue
		}
		if key, ok := b.claims[c.ID]; ok && !next.Status.Active() {
			delete(b.keys, key)
			delete(b.claims, c.ID)
		}
		b.jobs[c.ID] = next
		out[i].Job = next.Clone()
	}
	return out, nil
}

// Due returns up to limit jobs in status whose DueAt is before `before`
// (whole milliseconds), earliest first; see jobstore.Driver.
func (d *Driver) Due(ctx context.Context, status job.Status, before time.Time, limit int) ([]*job.Job, error) {
	b, err := d.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer b.mu.Unlock()
	cut := before.UnixMilli()
	var due []*job.Job
	for _, id := range b.ids {
		j := b.jobs[id]
		if j.Status == status && !j.DueAt.IsZero() && j.DueAt.UnixMilli() < cut {
			due = append(due, j)
		}
	}
	slices.SortStableFunc(due, func(a, b *job.Job) int { // ids ascending already
		return cmp.Compare(a.DueAt.UnixMilli(), b.DueAt.UnixMilli())
	})
	return clones(due[:min(len(due), limit)]), nil
}

// Owned returns up to limit RUNNING jobs of owner, by id; see
// jobstore.Driver.
func (d *Driver) Owned(ctx context.Context, owner string, limit int) ([]*job.Job, error) {
	b, err := d.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer b.mu.Unlock()
	var out []*job.Job
	for _, id := range b.ids {
		if j := b.jobs[id]; j.Status == job.Running && j.Owner == owner {
			out = append(out, j.Clone())
			if len(out) == limit {
				break
			}
		}
	}
	return out, nil
}

// List returns one page of jobs, newest first; see jobstore.Driver. The
// cursor is the id of the last job of the previous page.
func (d *Driver) List(ctx context.Context, q jobstore.ListQuery) (jobstore.Page, error) {
	b, err := d.begin(ctx)
	if err != nil {
		return jobstore.Page{}, err
	}
	defer b.mu.Unlock()
	if q.Cursor != "" && !job.ValidID(q.Cursor) {
		return jobstore.Page{}, errcode.New(errcode.InvalidArgument, "list jobs: invalid cursor %q", q.Cursor)
	}
	limit := q.Limit
	if limit <= 0 {
		limit = 100
	}
	top := len(b.ids) // ids[:top] are below the cursor
	if q.Cursor != "" {
		top, _ = slices.BinarySearch(b.ids, q.Cursor)
	}
	var p jobstore.Page
	for i := top - 1; i >= 0; i-- {
		j := b.jobs[b.ids[i]]
		if (q.Status != job.None && j.Status != q.Status) || (q.Type != "" && j.Type != q.Type) {
			continue
		}
		if len(p.Jobs) == limit {
			p.Next = p.Jobs[limit-1].ID
			break
		}
		p.Jobs = append(p.Jobs, j.Clone())
	}
	return p, nil
}

// Purge deletes up to limit terminal records whose ExpiresAt is before now
// (whole milliseconds) and returns how many it deleted, as
// sqlitejobstore.Driver.Purge does.
func (d *Driver) Purge(ctx context.Context, now time.Time, limit int) (int, error) {
	if limit <= 0 {
		return 0, errcode.New(errcode.InvalidArgument, "purge jobs: limit must be positive")
	}
	b, err := d.begin(ctx)
	if err != nil {
		return 0, err
	}
	defer b.mu.Unlock()
	cut := now.UnixMilli()
	n := 0
	kept := b.ids[:0]
	for _, id := range b.ids {
		j := b.jobs[id]
		if n < limit && j.Status.Terminal() && !j.ExpiresAt.IsZero() && j.ExpiresAt.UnixMilli() < cut {
			delete(b.jobs, id)
			n++
			continue
		}
		kept = append(kept, id)
	}
	clear(b.ids[len(kept):])
	b.ids = kept
	return n, nil
}

var _ jobstore.Leaser = (*Driver)(nil)

// AcquireLease implements jobstore.Leaser as sqlitejobstore does: the lease
// is taken when it is free, expired (its end, in whole milliseconds, is not
// after now) or already held by holder.
func (d *Driver) AcquireLease(ctx context.Context, name, holder string, now, until time.Time) (bool, error) {
	b, err := d.begin(ctx)
	if err != nil {
		return false, err
	}
	defer b.mu.Unlock()
	if l, ok := b.leases[name]; ok && l.untilMS > now.UnixMilli() && l.holder != holder {
		return false, nil
	}
	b.leases[name] = lease{holder: holder, untilMS: until.UnixMilli()}
	return true, nil
}

// ReleaseLease implements jobstore.Leaser: the lease is freed when holder
// holds it.
func (d *Driver) ReleaseLease(ctx context.Context, name, holder string) error {
	b, err := d.begin(ctx)
	if err != nil {
		return err
	}
	defer b.mu.Unlock()
	if l, ok := b.leases[name]; ok && l.holder == holder {
		delete(b.leases, name)
	}
	return nil
}

// Close closes this handle: its calls afterwards fail with errcode.Closed;
// other handles on the backend go on working. Closing twice is fine.
func (d *Driver) Close() error {
	d.closed.Store(true)
	return nil
}

func clones(jobs []*job.Job) []*job.Job {
	out := make([]*job.Job, len(jobs))
	for i, j := range jobs {
		out[i] = j.Clone()
	}
	return out
}

// own returns the store's copy of a job given to Create.
func own(in *job.Job) *job.Job {
	j := in.Clone()
	normalize(j)
	return j
}

// normalize makes j what a SQLite round trip would make it: times in UTC
// without monotonic readings, strings valid UTF-8, empty raw fields nil.
func normalize(j *job.Job) {
	for _, t := range []*time.Time{&j.LeaseUntil, &j.RunAt, &j.ResendAt, &j.DueAt, &j.StartBy,
		&j.CreatedAt, &j.UpdatedAt, &j.StartedAt, &j.FinishedAt, &j.ExpiresAt} {
		*t = utc(*t)
	}
	for _, s := range []*string{&j.ID, &j.Type, &j.Key, &j.PayloadRef, &j.PayloadHash, &j.Owner,
		&j.Detail, &j.ResultRef, &j.Error} {
		*s = validUTF8(*s)
	}
	j.Status = job.Status(validUTF8(string(j.Status)))
	for i := range j.History {
		h := &j.History[i]
		h.StartedAt, h.EndedAt = utc(h.StartedAt), utc(h.EndedAt)
		h.Owner, h.Reason = validUTF8(h.Owner), validUTF8(h.Reason)
		h.Outcome = job.Outcome(validUTF8(string(h.Outcome)))
	}
	j.Payload, j.Progress, j.Result = rawOrNil(j.Payload), rawOrNil(j.Progress), rawOrNil(j.Result)
}

func utc(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC()
}

func rawOrNil(b json.RawMessage) json.RawMessage {
	if len(b) == 0 {
		return nil
	}
	return b
}

// validUTF8 replaces each byte of s that is not part of valid UTF-8 with
// U+FFFD, as encoding/json does.
func validUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	b := make([]byte, 0, len(s)+8)
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = utf8.AppendRune(b, utf8.RuneError)
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return string(b)
}

// recordSlack bounds the JSON encoding of a record's fixed parts: field
// names, punctuation, numbers and timestamps (about 700 bytes today).
const recordSlack = 4 << 10

// checkSize refuses a record whose encoding exceeds MaxRecordBytes. The
// encoding is measured only when a cheap bound (every string byte escaped
// as \u00XX) could exceed the limit, so small records cost nothing.
func checkSize(j *job.Job) error {
	raw := len(j.Payload) + len(j.Progress) + len(j.Result)
	str := len(j.ID) + len(j.Type) + len(j.Key) + len(j.PayloadRef) + len(j.PayloadHash) + len(j.Owner) +
		len(j.Detail) + len(j.ResultRef) + len(j.Error)
	for _, h := range j.History {
		str += len(h.Owner) + len(h.Reason) + len(h.Outcome) + 200
	}
	if raw+6*str+recordSlack <= MaxRecordBytes {
		return nil
	}
	c := *j
	c.Payload, c.Progress, c.Result = nil, nil, nil
	rec, err := json.Marshal(&c)
	if err != nil {
		return errcode.Wrap(errcode.InvalidArgument, err, "encode job %s", j.ID)
	}
	if n := len(rec) + raw; n > MaxRecordBytes {
		return errcode.New(errcode.InvalidArgument,
			"job %s: record is %d bytes; the limit is %d (keep large payloads and results in the blob store)",
			j.ID, n, MaxRecordBytes)
	}
	return nil
}
