package memjobstore_test

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobfleet/jobfleet/pkg/errcode"
	"github.com/jobfleet/jobfleet/pkg/job"
	"github.com/jobfleet/jobfleet/pkg/jobstore/memjobstore"
)

var (
	t0     = time.Date(2030, 1, 2, 3, 4, 5, 678_901_234, time.UTC)
	policy = job.DefaultPolicy
)

func newJob(now time.Time, s job.Submission) *job.Job {
	if s.Type == "" {
		s.Type = "t"
	}
	return policy.New(&s, job.DefaultLimits, job.NewID(now), now)
}

// Purge deletes expired terminal records only, up to the limit, as
// sqlitejobstore's does; the key of a purged job stays free.
func TestPurge(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := memjobstore.NewBackend()
	s := b.Open(nil)
	defer s.Close()
	d := b.Driver()

	var done []*job.Job
	for i := range 3 {
		j := newJob(t0, job.Submission{Key: fmt.Sprint("k", i)})
		_, err := s.Create(ctx, j)
		require.NoError(t, err)
		r, err := s.ApplyOne(ctx, policy.Start(job.Message{ID: j.ID}, "w", t0))
		require.NoError(t, err)
		r, err = s.ApplyOne(ctx, policy.Finish(r, t0.Add(time.Duration(i)*time.Hour), job.End{Outcome: job.OutcomeSucceeded}))
		require.NoError(t, err)
		done = append(done, r)
	}
	active := newJob(t0, job.Submission{})
	_, err := s.Create(ctx, active)
	require.NoError(t, err)
	require.Equal(t, 4, b.Len())

	_, err = d.Purge(ctx, t0, 0)
	require.Equal(t, errcode.InvalidArgument, errcode.Of(err))
	n, err := d.Purge(ctx, done[0].ExpiresAt, 10)
	require.NoError(t, err)
	require.Zero(t, n, "ExpiresAt must be before now")

	n, err = d.Purge(ctx, done[2].ExpiresAt.Add(time.Millisecond), 2)
	require.NoError(t, err)
	require.Equal(t, 2, n)
	n, err = d.Purge(ctx, done[2].ExpiresAt.Add(time.Millisecond), 2)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	require.Equal(t, 1, b.Len())
	_, err = d.Get(ctx, done[0].ID)
	require.Equal(t, errcode.NotFound, errcode.Of(err))
	_, err = d.Get(ctx, active.ID)
	require.NoError(t, err)

	require.NoError(t, d.Close())
	_, err = d.Purge(ctx, t0, 1)
	require.Equal(t, errcode.Closed, errcode.Of(err))
}

// Records read back as a SQLite round trip makes them: every byte of an
// invalid UTF-8 sequence becomes U+FFFD, times are UTC, empty raw JSON is
// nil.
func TestNormalized(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := memjobstore.New(nil)
	defer s.Close()
	zone := time.FixedZone("UTC+2", 2*3600)
	j := newJob(t0.In(zone), job.Submission{})
	j.Detail = "ok \xff\xfe end"
	j.Progress = json.RawMessage{}
	_, err := s.Create(ctx, j)
	require.NoError(t, err)
	got, err := s.Get(ctx, j.ID)
	require.NoError(t, err)
	require.Equal(t, "ok \uFFFD\uFFFD end", got.Detail)
	require.Equal(t, time.UTC, got.CreatedAt.Location())
	require.True(t, got.CreatedAt.Equal(t0), "full precision")
	require.Nil(t, got.Progress)

	running, err := s.ApplyOne(ctx, policy.Start(job.Message{ID: j.ID}, "w\xc3", t0.In(zone)))
	require.NoError(t, err)
	require.Equal(t, "w\uFFFD", running.Owner)
	require.Equal(t, "w\uFFFD", running.History[0].Owner)
	require.Equal(t, time.UTC, running.History[0].StartedAt.Location())
}

// Every time field of a record reads back in UTC, whatever zone it was
// written in: a field added to job.Job must be added to normalize.
func TestEveryTimeUTC(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := memjobstore.New(nil)
	defer s.Close()
	zone := time.FixedZone("UTC-3", -3*3600)
	j := newJob(t0, job.Submission{})
	setTimes(reflect.ValueOf(j).Elem(), t0.In(zone))
	j.History = []job.Attempt{{Attempt: 1}}
	setTimes(reflect.ValueOf(&j.History[0]).Elem(), t0.In(zone))
	_, err := s.Create(ctx, j)
	require.NoError(t, err)
	got, err := s.Get(ctx, j.ID)
	require.NoError(t, err)
	requireTimesUTC(t, reflect.ValueOf(got).Elem())
	requireTimesUTC(t, reflect.ValueOf(got.History[0]))
}

var timeType = reflect.TypeFor[time.Time]()

func setTimes(v reflect.Value, tm time.Time) {
	for i := range v.NumField() {
		if v.Field(i).Type() == timeType {
			v.Field(i).Set(reflect.ValueOf(tm))
		}
	}
}

func requireTimesUTC(t *testing.T, v reflect.Value) {
	t.Helper()
	for i := range v.NumField() {
		if v.Field(i).Type() == timeType {
			tm := v.Field(i).Interface().(time.Time)
			require.Equal(t, time.UTC, tm.Location(), "%s.%s", v.Type().Name(), v.Type().Field(i).Name)
			require.True(t, tm.Equal(t0), "%s.%s", v.Type().Name(), v.Type().Field(i).Name)
		}
	}
}

func ExampleNew() {
	ctx := context.Background()
	store := memjobstore.New(nil)
	defer store.Close()

	now := time.Now()
	j := job.DefaultPolicy.New(&job.Submission{Type: "resize", Key: "img-1"}, job.DefaultLimits, job.NewID(now), now)
	if _, err := store.Create(ctx, j); err != nil {
		panic(err)
	}
	dup := job.DefaultPolicy.New(&job.Submission{Type: "resize", Key: "img-1"}, job.DefaultLimits, job.NewID(now), now)
	res, _ := store.Create(ctx, dup)
	fmt.Println("key held by the first job:", res[0].Holder == j.ID)

	running, err := store.ApplyOne(ctx, job.DefaultPolicy.Start(job.Message{ID: j.ID}, "worker-1", now))
	if err != nil {
		panic(err)
	}
	fmt.Println(running.Status, running.Attempt, running.Owner)
	// Output:
	// key held by the first job: true
	// RUNNING 1 worker-1
}
