// Package storetest is the conformance suite for job store drivers. Every
// adapter runs it unchanged, through jobstore.Store, from its
// conformance_test.go:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) storetest.Harness {
//			s := openFreshStore(t) // isolated, empty; closed at t.Cleanup
//			return storetest.Harness{Store: s, Open: ...}
//		})
//	}
//
// The suite pins down what the jobstore package doc promises, so that two
// adapters that pass it behave the same:
//
//   - records round-trip exactly: every field, payload/progress/result bytes
//     as given (whitespace, escapes, NUL escapes, emoji, 200 KiB), times to
//     the millisecond and in UTC whatever zone they were written in;
//   - creates: per-entry results in order, a taken id or active key is
//     errcode.AlreadyExists naming the holder and its payload hash (the id
//     wins when both are taken), keys are released only by terminal writes,
//     exactly one of many concurrent claimants wins, batches over MaxBatch;
//   - changes built by job.Policy: each is a conditional write that wins
//     once; losers get errcode.FailedPrecondition and the record as found,
//     missing jobs errcode.NotFound; fencing on owner, attempt, lease and
//     revision; terminal states are written once; batches are not
//     transactions; illegal transitions never reach the driver;
//   - records are capped at 400 KiB (DynamoDB's item limit), per entry, with
//     errcode.InvalidArgument;
//   - Due, Owned and List: filters, order, limits, cursors;
//   - retention hides expired terminal records; canceled contexts fail the
//     call and leave the store usable; use after Close is errcode.Closed.
//
// Cases run in parallel, each on its own harness. Times come from a fixed
// base (in the future, so that the default real clock never hides a record
// as expired, and with sub-millisecond digits) that cases advance by hand.
package storetest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/stretchr/testify/require"

	"github.com/jobfleet/jobfleet/pkg/errcode"
	"github.com/jobfleet/jobfleet/pkg/job"
	"github.com/jobfleet/jobfleet/pkg/jobstore"
)

// Harness is one isolated store for one case.
type Harness struct {
	// Store is a fresh, empty store that shares nothing with the store of
	// any other harness. The harness closes it at cleanup (the suite may
	// have closed it already).
	Store *jobstore.Store
	// Open opens another Store on the same backend as Store, as a second
	// process or client would (its own connections or client), with opts;
	// the harness closes it at cleanup. Cases that need it are skipped when
	// it is nil.
	Open func(t *testing.T, opts *jobstore.Options) *jobstore.Store
	// IndexLag is how long Due, Owned and List may take to reflect a write
	// (DynamoDB's global secondary indexes are eventually consistent). Zero
	// means they are strongly consistent, and the suite checks their
	// results at once.
	IndexLag time.Duration
}

// Run runs the suite. newHarness is called once per case, from the case's
// own (parallel) test.
func Run(t *testing.T, newHarness func(t *testing.T) Harness) {
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			require.NotNil(t, h.Store, "harness without a store")
			c.run(newFixture(t, h))
		})
	}
}

var cases = []struct {
	name string
	run  func(f *fx)
}{
	{"CreateGetRoundTrip", testCreateGetRoundTrip},
	{"TimesAreUTC", testTimesAreUTC},
	{"CreateBatchResults", testCreateBatchResults},
	{"DuplicateID", testDuplicateID},
	{"KeyClaim", testKeyClaim},
	{"KeyClaimWithinBatch", testKeyClaimWithinBatch},
	{"KeyReleasedByTerminalWrites", testKeyReleasedByTerminal},
	{"KeyHeldWhileActive", testKeyHeldWhileActive},
	{"KeyConcurrentCreates", testKeyConcurrentCreates},
	{"CreateMoreThanMaxBatch", testCreateMoreThanMaxBatch},
	{"RecordSizeLimit", testRecordSizeLimit},
	{"StartOnce", testStartOnce},
	{"StartStaleAttempt", testStartStaleAttempt},
	{"StartMissing", testStartMissing},
	{"StartRace", testStartRace},
	{"RenewFenced", testRenewFenced},
	{"RenewSeesCancelRequest", testRenewSeesCancelRequest},
	{"TakeoverAfterLeaseExpiry", testTakeover},
	{"Finish", testFinish},
	{"HistoryBounded", testHistoryBounded},
	{"TerminalWrittenOnce", testTerminalWrittenOnce},
	{"ReclaimOnce", testReclaimOnce},
	{"ApplyBatchEntriesIndependent", testApplyBatchIndependent},
	{"IllegalTransitionRejected", testIllegalTransition},
	{"Due", testDue},
	{"Owned", testOwned},
	{"ListFilters", testListFilters},
	{"ListPaging", testListPaging},
	{"ListBadInput", testListBadInput},
	{"Retention", testRetention},
	{"ContextCanceled", testContextCanceled},
	{"UseAfterClose", testUseAfterClose},
	{"SecondHandle", testSecondHandle},
	{"OddKeys", testOddKeys},
	{"OddPayloads", testOddPayloads},
	{"Leases", testLeases},
}

// base is the suite's time origin: in the future (records finished at base
// stay within their retention by the real clock) and not on a millisecond.
var base = time.Date(2099, 3, 4, 5, 6, 7, 123456789, time.UTC)

var policy = job.DefaultPolicy

// fx is a case's fixture: the harness, a context and the case's clock.
type fx struct {
	t   *testing.T
	h   Harness
	s   *jobstore.Store
	ctx context.Context
	now time.Time
}

func newFixture(t *testing.T, h Harness) *fx {
	return &fx{t: t, h: h, s: h.Store, ctx: t.Context(), now: base}
}

// with returns a copy of f for a subtest (its own t and clock).
func (f *fx) with(t *testing.T) *fx {
	c := *f
	c.t = t
	c.ctx = t.Context()
	return &c
}

func (f *fx) advance(d time.Duration) time.Time {
	f.now = f.now.Add(d)
	return f.now
}

// newJob builds (does not store) a job for s at f.now.
func (f *fx) newJob(s job.Submission) *job.Job {
	return f.newJobAt(s, f.now)
}

func (f *fx) newJobAt(s job.Submission, at time.Time) *job.Job {
	if s.Type == "" {
		s.Type = "test.job"
	}
	return policy.New(&s, job.DefaultLimits, job.NewID(at), at)
}

// create stores jobs and requires every entry to succeed.
func (f *fx) create(jobs ...*job.Job) {
	f.t.Helper()
	res, err := f.s.Create(f.ctx, jobs...)
	require.NoError(f.t, err)
	require.Len(f.t, res, len(jobs))
	for i, r := range res {
		require.NoError(f.t, r.Err, "create entry %d (job %s)", i, jobs[i].ID)
	}
}

// submit builds, stores and reads back a job.
func (f *fx) submit(s job.Submission) *job.Job {
	f.t.Helper()
	j := f.newJob(s)
	f.create(j)
	got := f.get(j.ID)
	requireJob(f.t, j, got)
	return got
}

func (f *fx) get(id string) *job.Job {
	f.t.Helper()
	j, err := f.s.Get(f.ctx, id)
	require.NoError(f.t, err, "get job %s", id)
	return j
}

func (f *fx) requireNotFound(id string) {
	f.t.Helper()
	_, err := f.s.Get(f.ctx, id)
	requireCode(f.t, errcode.NotFound, err)
}

// win applies c to the stored record cur and requires it to win: the result
// is cur with c's patch applied (job.Patch.Apply is the model), and a Get
// afterwards sees it.
func (f *fx) win(cur *job.Job, c job.Change) *job.Job {
	f.t.Helper()
	res, err := f.s.Apply(f.ctx, c)
	require.NoError(f.t, err)
	require.Len(f.t, res, 1)
	require.NoError(f.t, res[0].Err, "%s job %s", c.Event, c.ID)
	want := cur.Clone()
	c.Set.Apply(want)
	requireJob(f.t, want, res[0].Job)
	requireJob(f.t, res[0].Job, f.get(c.ID))
	return res[0].Job
}

// lose applies c and requires it to lose: errcode.FailedPrecondition, the
// record as found, and nothing written.
func (f *fx) lose(c job.Change) *job.Job {
	f.t.Helper()
	before := f.get(c.ID)
	res, err := f.s.Apply(f.ctx, c)
	require.NoError(f.t, err)
	require.Len(f.t, res, 1)
	requireCode(f.t, errcode.FailedPrecondition, res[0].Err)
	requireJob(f.t, before, res[0].Job)
	requireJob(f.t, before, f.get(c.ID))
	return res[0].Job
}

// start starts the queued job cur as owner, with the message for its
// current attempt.
func (f *fx) start(cur *job.Job, owner string) *job.Job {
	f.t.Helper()
	return f.win(cur, policy.Start(job.Message{ID: cur.ID, Attempt: cur.Attempt}, owner, f.now))
}

func (f *fx) finish(cur *job.Job, e job.End) *job.Job {
	f.t.Helper()
	return f.win(cur, policy.Finish(cur, f.now, e))
}

// settled runs check, an assertion about what Due, Owned or List return:
// once when the harness's indexes are strongly consistent, else until it
// passes or IndexLag has passed.
func (f *fx) settled(check func() error) {
	f.t.Helper()
	err := check()
	if err == nil {
		return
	}
	if f.h.IndexLag > 0 {
		deadline := time.NewTimer(f.h.IndexLag)
		defer deadline.Stop()
		// Polling: an eventually consistent index announces nothing.
		tick := time.NewTicker(min(f.h.IndexLag/10+time.Millisecond, 200*time.Millisecond))
		defer tick.Stop()
	poll:
		for {
			select {
			case <-tick.C:
				if err = check(); err == nil {
					return
				}
			case <-deadline.C:
				break poll
			}
		}
	}
	f.t.Fatal(err)
}

// sameIDs returns nil when got holds exactly the jobs want, in that order.
func sameIDs(what string, want []string, got []*job.Job) error {
	if diff := cmp.Diff(want, ids(got), cmpopts.EquateEmpty()); diff != "" {
		return fmt.Errorf("%s: job ids (-want +got):\n%s", what, diff)
	}
	return nil
}

func ids(jobs []*job.Job) []string {
	out := make([]string, len(jobs))
	for i, j := range jobs {
		out[i] = j.ID
	}
	return out
}

func idsOf(jobs ...*job.Job) []string { return ids(jobs) }

// newestFirst returns the ids of jobs sorted as List returns them.
func newestFirst(jobs []*job.Job) []string {
	out := ids(jobs)
	slices.Sort(out)
	slices.Reverse(out)
	return out
}

// jobCmp compares records: times to the millisecond (the contract's
// precision), nil and empty slices alike, raw JSON byte for byte.
var jobCmp = []cmp.Option{
	cmp.Comparer(func(a, b json.RawMessage) bool { return bytes.Equal(a, b) }),
	cmp.FilterValues(func(a, b []job.Attempt) bool { return len(a) == 0 && len(b) == 0 },
		cmp.Comparer(func(a, b []job.Attempt) bool { return true })),
	cmp.Comparer(func(a, b time.Time) bool { return a.Sub(b).Abs() < time.Millisecond }),
}

// requireJob requires got to be the record want, with every time in UTC.
func requireJob(t *testing.T, want, got *job.Job) {
	t.Helper()
	require.NotNil(t, got, "no record returned")
	if diff := cmp.Diff(want, got, jobCmp...); diff != "" {
		t.Fatalf("job %s (-want +got):\n%s", want.ID, diff)
	}
	requireUTC(t, got)
}

// requireUTC requires every non-zero time in j to be in UTC.
func requireUTC(t *testing.T, j *job.Job) {
	t.Helper()
	eachTime(j, func(name string, tm time.Time) {
		if !tm.IsZero() && tm.Location() != time.UTC {
			t.Errorf("job %s: %s is %v, want UTC", j.ID, name, tm)
		}
	})
}

var timeType = reflect.TypeFor[time.Time]()

func eachTime(j *job.Job, fn func(name string, t time.Time)) {
	walk := func(prefix string, v reflect.Value) {
		for i := range v.NumField() {
			if v.Field(i).Type() == timeType {
				fn(prefix+v.Type().Field(i).Name, v.Field(i).Interface().(time.Time))
			}
		}
	}
	walk("", reflect.ValueOf(j).Elem())
	for i, a := range j.History {
		walk(fmt.Sprintf("History[%d].", i), reflect.ValueOf(a))
	}
}

// requireCode requires err to carry code.
func requireCode(t *testing.T, code errcode.Code, err error) {
	t.Helper()
	require.Error(t, err, "want %s", code)
	require.Equal(t, code, errcode.Of(err), "error: %v", err)
	require.ErrorIs(t, err, code)
}

// requireCanceled requires err to report the caller's canceled context.
func requireCanceled(t *testing.T, err error) {
	t.Helper()
	require.Error(t, err)
	require.True(t, errcode.Of(err) == errcode.Canceled || errors.Is(err, context.Canceled) ||
		errors.Is(err, context.DeadlineExceeded), "want a canceled-context error, got %v", err)
}

// race runs fn(i) for i in [0, n) in goroutines released together, and
// returns their errors.
func race(n int, fn func(i int) error) []error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	ready := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-ready
			errs[i] = fn(i)
		})
	}
	close(ready)
	wg.Wait()
	return errs
}

func raw(s string) json.RawMessage { return json.RawMessage(s) }
