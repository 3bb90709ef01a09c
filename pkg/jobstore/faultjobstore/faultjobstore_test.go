package faultjobstore_test

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobfleet/jobfleet/pkg/errcode"
	"github.com/jobfleet/jobfleet/pkg/job"
	"github.com/jobfleet/jobfleet/pkg/jobstore"
	"github.com/jobfleet/jobfleet/pkg/jobstore/faultjobstore"
	"github.com/jobfleet/jobfleet/pkg/jobstore/memjobstore"
	"github.com/jobfleet/jobfleet/pkg/jobstore/storetest"
)

var (
	t0     = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	policy = job.DefaultPolicy
)

// Without faults the wrapper is transparent: it passes the suite.
func TestConformanceWithoutFaults(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Harness {
		b := memjobstore.NewBackend()
		open := func(t *testing.T, opts *jobstore.Options) *jobstore.Store {
			s := jobstore.New(faultjobstore.Wrap(b.Driver(), nil), opts)
			t.Cleanup(func() { s.Close() })
			return s
		}
		return storetest.Harness{Store: open(t, nil), Open: open}
	})
}

type env struct {
	t     *testing.T
	truth *jobstore.Store // the backend, without faults
	fd    *faultjobstore.Driver
	s     *jobstore.Store // through the faults
	slept []time.Duration
}

func setup(t *testing.T, f faultjobstore.Faults) *env {
	b := memjobstore.NewBackend()
	e := &env{t: t, truth: b.Open(nil)}
	e.fd = faultjobstore.Wrap(b.Driver(), &faultjobstore.Options{
		Faults: f,
		Rand:   rand.New(rand.NewPCG(1, 2)),
		Sleep: func(ctx context.Context, d time.Duration) error {
			e.slept = append(e.slept, d)
			return ctx.Err()
		},
	})
	e.s = jobstore.New(e.fd, nil)
	t.Cleanup(func() { e.s.Close(); e.truth.Close() })
	return e
}

// queued stores n new jobs directly in the backend.
func (e *env) queued(n int) []*job.Job {
	e.t.Helper()
	jobs := make([]*job.Job, n)
	for i := range jobs {
		jobs[i] = policy.New(&job.Submission{Type: "t"}, job.DefaultLimits, job.NewID(t0), t0)
	}
	res, err := e.truth.Create(context.Background(), jobs...)
	require.NoError(e.t, err)
	for _, r := range res {
		require.NoError(e.t, r.Err)
	}
	return jobs
}

func (e *env) status(id string) job.Status {
	e.t.Helper()
	j, err := e.truth.Get(context.Background(), id)
	require.NoError(e.t, err)
	return j.Status
}

func start(j *job.Job) job.Change {
	return policy.Start(job.Message{ID: j.ID, Attempt: j.Attempt}, "w", t0)
}

func requireUnavailable(t *testing.T, err error) {
	t.Helper()
	require.Error(t, err)
	require.Equal(t, errcode.Unavailable, errcode.Of(err), "%v", err)
	require.True(t, errcode.Retryable(err))
}

func TestUnavailable(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := setup(t, faultjobstore.Faults{Unavailable: 1})
	jobs := e.queued(1)
	_, err := e.s.Apply(ctx, start(jobs[0]))
	requireUnavailable(t, err)
	require.Equal(t, job.Queued, e.status(jobs[0].ID), "nothing applied")
	fresh := policy.New(&job.Submission{Type: "t"}, job.DefaultLimits, job.NewID(t0), t0)
	_, err = e.s.Create(ctx, fresh)
	requireUnavailable(t, err)
	_, err = e.truth.Get(ctx, fresh.ID)
	require.Equal(t, errcode.NotFound, errcode.Of(err), "nothing created")
	_, err = e.s.Get(ctx, jobs[0].ID)
	requireUnavailable(t, err)
	_, err = e.s.Due(ctx, job.Queued, t0.Add(time.Hour), 10)
	requireUnavailable(t, err)
	_, err = e.s.Owned(ctx, "w", 10)
	requireUnavailable(t, err)
	_, err = e.s.List(ctx, jobstore.ListQuery{})
	requireUnavailable(t, err)
	require.Equal(t, 6, e.fd.Stats().Unavailable)

	// Faults change at once.
	e.fd.SetFaults(faultjobstore.Faults{})
	require.Equal(t, faultjobstore.Faults{}, e.fd.Faults())
	_, err = e.s.ApplyOne(ctx, start(jobs[0]))
	require.NoError(t, err)
	require.Equal(t, job.Running, e.status(jobs[0].ID))
}

func TestEntryUnavailable(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := setup(t, faultjobstore.Faults{EntryUnavailable: 0.5})
	jobs := e.queued(40)
	changes := make([]job.Change, len(jobs))
	for i, j := range jobs {
		changes[i] = start(j)
	}
	res, err := e.s.Apply(ctx, changes...)
	require.NoError(t, err)
	failed := 0
	for i, r := range res {
		if r.Err != nil {
			failed++
			requireUnavailable(t, r.Err)
			require.Equal(t, job.Queued, e.status(jobs[i].ID), "a refused entry is not applied")
			continue
		}
		require.Equal(t, job.Running, r.Job.Status)
		require.Equal(t, job.Running, e.status(jobs[i].ID))
	}
	require.Equal(t, failed, e.fd.Stats().EntryUnavailable)
	require.Greater(t, failed, 5)
	require.Less(t, failed, 35)
}

func TestAmbiguous(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := setup(t, faultjobstore.Faults{Ambiguous: 1})
	jobs := e.queued(2)
	_, err := e.s.Apply(ctx, start(jobs[0]), start(jobs[1]))
	requireUnavailable(t, err)
	require.Contains(t, err.Error(), "may have been applied")
	require.Equal(t, job.Running, e.status(jobs[0].ID), "the write landed")
	require.Equal(t, job.Running, e.status(jobs[1].ID))

	fresh := policy.New(&job.Submission{Type: "t", Key: "k"}, job.DefaultLimits, job.NewID(t0), t0)
	_, err = e.s.Create(ctx, fresh)
	requireUnavailable(t, err)
	got, err := e.truth.Get(ctx, fresh.ID)
	require.NoError(t, err, "the create landed")
	require.Equal(t, "k", got.Key)
	require.Equal(t, 2, e.fd.Stats().Ambiguous)
}

func TestSlow(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := setup(t, faultjobstore.Faults{Slow: 1, MaxLatency: 3 * time.Second})
	jobs := e.queued(1)
	_, err := e.s.ApplyOne(ctx, start(jobs[0]))
	require.NoError(t, err)
	_, err = e.s.Get(ctx, jobs[0].ID)
	require.NoError(t, err)
	require.Len(t, e.slept, 2)
	for _, d := range e.slept {
		require.Positive(t, d)
		require.LessOrEqual(t, d, 3*time.Second)
	}
	require.Equal(t, 2, e.fd.Stats().Slow)

	// A slow call whose context ends while it waits fails with it.
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	_, err = e.s.Get(canceled, jobs[0].ID)
	require.Equal(t, errcode.Canceled, errcode.Of(err))
}

func TestRealSleep(t *testing.T) {
	t.Parallel()
	b := memjobstore.NewBackend()
	fd := faultjobstore.Wrap(b.Driver(), &faultjobstore.Options{Faults: faultjobstore.Faults{Slow: 1, MaxLatency: time.Hour}})
	s := jobstore.New(fd, nil)
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err := s.Get(ctx, job.NewID(t0))
	require.Equal(t, errcode.Canceled, errcode.Of(err), "the default sleep ends with the context")
}

func TestDeterministic(t *testing.T) {
	t.Parallel()
	run := func() []bool {
		e := setup(t, faultjobstore.Faults{Unavailable: 0.3, EntryUnavailable: 0.3, Ambiguous: 0.3})
		jobs := e.queued(30)
		var out []bool
		for _, j := range jobs {
			res, err := e.s.Apply(context.Background(), start(j))
			out = append(out, err == nil && res[0].Err == nil)
		}
		return out
	}
	require.Equal(t, run(), run())
}
