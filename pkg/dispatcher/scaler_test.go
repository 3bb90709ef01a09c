package dispatcher_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/jobfleet/jobfleet/pkg/dispatcher"
	"github.com/jobfleet/jobfleet/pkg/errcode"
	"github.com/jobfleet/jobfleet/pkg/fleet"
	"github.com/jobfleet/jobfleet/pkg/fleet/procfleet"
	"github.com/jobfleet/jobfleet/pkg/queue"
)

func TestDesired(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		backlog               int64
		per, minW, maxW, want int
	}{
		{0, 4, 0, 10, 0},
		{1, 4, 0, 10, 1},
		{4, 4, 0, 10, 1},
		{5, 4, 0, 10, 2},
		{1000, 4, 0, 10, 10},
		{0, 4, 2, 10, 2},
		{3, 1, 0, 2, 2},
	} {
		require.Equal(t, tc.want, dispatcher.Desired(tc.backlog, tc.per, tc.minW, tc.maxW), "%+v", tc)
	}
}

// backlog sends n work messages.
func (e *env) backlog(n int) {
	e.t.Helper()
	var es []queue.SendEntry
	for i := range n {
		es = append(es, queue.SendEntry{Body: []byte(fmt.Sprintf(`{"n":%d}`, i))})
	}
	_, err := e.work.Send(e.t.Context(), es...)
	require.NoError(e.t, err)
}

// localFleet is a real local fleet whose workers are `sleep` processes.
func localFleet(t *testing.T, maxWorkers int) *fleet.Fleet {
	t.Helper()
	f, err := procfleet.Open(t.Context(), filepath.Join(t.TempDir(), "fleet.db"), &procfleet.Options{
		Command: []string{"sleep", "3600"}, MaxWorkers: maxWorkers, StopTimeout: time.Second,
	})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, f.Close()) })
	return f
}

func TestScalerProvisionsForBacklog(t *testing.T) {
	t.Parallel()
	e := setup(t, nil)
	f := localFleet(t, 10)
	s := dispatcher.NewScaler(f, e.work, &dispatcher.ScalerOptions{PerWorker: 2, Max: 4, Clock: e.clk, Metrics: e.m})
	ctx := t.Context()

	d, err := s.Scale(ctx)
	require.NoError(t, err)
	require.Equal(t, dispatcher.Decision{}, d, "no backlog, no workers")

	e.backlog(5)
	d, err = s.Scale(ctx)
	require.NoError(t, err)
	require.Equal(t, dispatcher.Decision{Backlog: 5, Active: 0, Desired: 3, Provisioned: 3}, d)
	d, err = s.Scale(ctx)
	require.NoError(t, err)
	require.Equal(t, 3, d.Active)
	require.Zero(t, d.Provisioned, "the workers it started count")

	e.backlog(20)
	d, err = s.Scale(ctx)
	require.NoError(t, err)
	require.Equal(t, 4, d.Desired, "capped at Max")
	require.Equal(t, 1, d.Provisioned)
	require.Equal(t, 4.0, testutil.ToFloat64(e.m.ScalerDesired))
	require.Equal(t, 25.0/3, testutil.ToFloat64(e.m.BacklogPerWorker), "backlog over the workers seen active before provisioning")
}

// fakeFleet is a fleet.Driver whose listing lags and whose provisioning
// fails on demand: what a real ECS fleet does and a local one cannot.
type fakeFleet struct {
	mu        sync.Mutex
	listed    []fleet.Worker
	failures  []fleet.Failure
	err       error
	asked     []int
	next      int
	listCalls int
}

func (f *fakeFleet) Provision(_ context.Context, n int) (fleet.Provisioned, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked = append(f.asked, n)
	if f.err != nil {
		return fleet.Provisioned{}, f.err
	}
	var p fleet.Provisioned
	failed := 0
	for _, fl := range f.failures {
		failed += fl.Count
	}
	p.Failures = f.failures
	for range n - failed {
		f.next++
		p.Workers = append(p.Workers, fleet.Worker{ID: fmt.Sprintf("task/%d", f.next), LastStatus: fleet.StatusProvisioning, DesiredStatus: fleet.StatusRunning})
	}
	return p, nil
}

func (f *fakeFleet) List(context.Context) ([]fleet.Worker, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.listCalls++
	return append([]fleet.Worker(nil), f.listed...), nil
}

func (f *fakeFleet) lists() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.listCalls
}

func (f *fakeFleet) Stop(context.Context, string, string) error { return nil }
func (f *fakeFleet) Close() error                               { return nil }

func TestScalerCountsUnlistedWorkers(t *testing.T) {
	t.Parallel()
	e := setup(t, nil)
	ff := &fakeFleet{}
	s := dispatcher.NewScaler(fleet.New(ff), e.work, &dispatcher.ScalerOptions{PerWorker: 1, Max: 10, Grace: time.Minute, Clock: e.clk, Metrics: e.m})
	e.backlog(2)
	for range 3 {
		_, err := s.Scale(t.Context())
		require.NoError(t, err)
	}
	require.Equal(t, []int{2}, ff.asked, "tasks not yet listed still count as pending")
	e.clk.Advance(2 * time.Minute)
	_, err := s.Scale(t.Context())
	require.NoError(t, err)
	require.Equal(t, []int{2, 2}, ff.asked, "after the grace, unlisted tasks no longer count")
}

func TestScalerBacksOffFailures(t *testing.T) {
	t.Parallel()
	e := setup(t, nil)
	ff := &fakeFleet{failures: []fleet.Failure{{Count: 3, Reason: "RESOURCE:ENI", Retryable: true}}}
	s := dispatcher.NewScaler(fleet.New(ff), e.work, &dispatcher.ScalerOptions{PerWorker: 1, Max: 10, Clock: e.clk, Metrics: e.m})
	e.backlog(3)
	d, err := s.Scale(t.Context())
	require.NoError(t, err)
	require.Equal(t, 3, d.Failed)
	require.Equal(t, "RESOURCE:ENI", s.LastFailure())
	require.Equal(t, 3.0, testutil.ToFloat64(e.m.ProvisionFailures.WithLabelValues("RESOURCE:ENI")))

	_, err = s.Scale(t.Context())
	require.NoError(t, err)
	require.Len(t, ff.asked, 1, "waits out the backoff")
	e.clk.Advance(1100 * time.Millisecond)
	_, err = s.Scale(t.Context())
	require.NoError(t, err)
	require.Len(t, ff.asked, 2, "tries again after 1 s")
	_, err = s.Scale(t.Context())
	require.NoError(t, err)
	e.clk.Advance(1100 * time.Millisecond)
	_, err = s.Scale(t.Context())
	require.NoError(t, err)
	require.Len(t, ff.asked, 2, "the backoff doubled to 2 s")

	ff.mu.Lock()
	ff.failures = nil
	ff.err = errcode.New(errcode.Unavailable, "throttled")
	ff.mu.Unlock()
	e.clk.Advance(time.Minute)
	_, err = s.Scale(t.Context())
	require.ErrorIs(t, err, errcode.Unavailable)
	ff.mu.Lock()
	ff.err = nil
	ff.mu.Unlock()
	e.clk.Advance(time.Minute)
	d, err = s.Scale(t.Context())
	require.NoError(t, err)
	require.Equal(t, 3, d.Provisioned)
	require.Empty(t, s.LastFailure(), "a success clears the failure")
}

func TestScalerWakesOnNewWork(t *testing.T) {
	t.Parallel()
	e := setup(t, nil)
	ff := &fakeFleet{}
	s := dispatcher.NewScaler(fleet.New(ff), e.work, &dispatcher.ScalerOptions{PerWorker: 1, Max: 10, Interval: time.Hour, Clock: e.clk, Metrics: e.m})
	require.NoError(t, s.Start(t.Context()))
	t.Cleanup(s.Stop)
	require.Error(t, s.Start(t.Context()))
	e.backlog(1)
	s.Wake()
	require.Eventually(t, func() bool {
		ff.mu.Lock()
		defer ff.mu.Unlock()
		return len(ff.asked) == 1
	}, 10*time.Second, 5*time.Millisecond, "a wake-up scales at once, not at the next interval")
	s.Stop()
	s.Stop()
}

// Two dispatcher replicas: only the one holding the store's lease
// provisions; when it stops, the other takes over at once.
func TestScalerElection(t *testing.T) {
	t.Parallel()
	e := setup(t, nil)
	ffA, ffB := &fakeFleet{}, &fakeFleet{}
	opts := func(holder string) *dispatcher.ScalerOptions {
		return &dispatcher.ScalerOptions{PerWorker: 1, Max: 10, Clock: e.clk, Metrics: e.m,
			Elector: dispatcher.NewElector(e.store, "scaler", holder, 15*time.Second, e.clk)}
	}
	a := dispatcher.NewScaler(fleet.New(ffA), e.work, opts("a"))
	b := dispatcher.NewScaler(fleet.New(ffB), e.work, opts("b"))
	e.backlog(2)
	da, err := a.Scale(t.Context())
	require.NoError(t, err)
	require.Equal(t, 2, da.Provisioned)
	db, err := b.Scale(t.Context())
	require.NoError(t, err)
	require.True(t, db.Follower)
	require.Empty(t, ffB.asked, "the follower does not provision")

	a.Stop() // resigns
	db, err = b.Scale(t.Context())
	require.NoError(t, err)
	require.False(t, db.Follower)
	require.Equal(t, []int{2}, ffB.asked, "the other replica took over at once")
	b.Stop()
}

// While provisioning fails, queued jobs say why; the note goes once workers
// start.
func TestScalerNotesQueuedJobs(t *testing.T) {
	t.Parallel()
	e := setup(t, nil)
	ff := &fakeFleet{failures: []fleet.Failure{{Count: 1, Reason: "RESOURCE:ENI", Retryable: true}}}
	s := dispatcher.NewScaler(fleet.New(ff), e.work, &dispatcher.ScalerOptions{PerWorker: 1, Max: 10, Clock: e.clk, Metrics: e.m, Store: e.store})
	v := e.submit(`{"type":"echo"}`)
	_, err := s.Scale(t.Context())
	require.NoError(t, err)
	j, err := e.store.Get(t.Context(), v.ID)
	require.NoError(t, err)
	require.Equal(t, "waiting for capacity: RESOURCE:ENI", j.Detail)

	ff.mu.Lock()
	ff.failures = nil
	ff.mu.Unlock()
	e.clk.Advance(time.Minute)
	d, err := s.Scale(t.Context())
	require.NoError(t, err)
	require.Equal(t, 1, d.Provisioned)
	j, err = e.store.Get(t.Context(), v.ID)
	require.NoError(t, err)
	require.Empty(t, j.Detail, "cleared once provisioning works")
}

// A failure that is not worth retrying (a bad task definition, missing
// permissions) is not described as waiting for capacity.
func TestScalerNotesFailuresThatNeedAnOperator(t *testing.T) {
	t.Parallel()
	e := setup(t, nil)
	const reason = "ClientException: TaskDefinition is inactive"
	ff := &fakeFleet{failures: []fleet.Failure{{Count: 1, Reason: reason}}}
	s := dispatcher.NewScaler(fleet.New(ff), e.work, &dispatcher.ScalerOptions{PerWorker: 1, Max: 10, Clock: e.clk, Metrics: e.m, Store: e.store})
	v := e.submit(`{"type":"echo"}`)
	_, err := s.Scale(t.Context())
	require.NoError(t, err)
	require.Equal(t, reason, s.LastFailure())
	j, err := e.store.Get(t.Context(), v.ID)
	require.NoError(t, err)
	require.Equal(t, "cannot provision workers: "+reason, j.Detail)

	// The same for a whole call refused as invalid.
	ff.mu.Lock()
	ff.failures, ff.err = nil, errcode.New(errcode.InvalidArgument, "bad network configuration")
	ff.mu.Unlock()
	e.clk.Advance(time.Minute)
	_, err = s.Scale(t.Context())
	require.ErrorIs(t, err, errcode.InvalidArgument)
	j, err = e.store.Get(t.Context(), v.ID)
	require.NoError(t, err)
	require.Equal(t, "cannot provision workers: bad network configuration", j.Detail)

	// A throttled call is waited out.
	ff.mu.Lock()
	ff.err = errcode.New(errcode.Unavailable, "throttled")
	ff.mu.Unlock()
	e.clk.Advance(time.Minute)
	_, err = s.Scale(t.Context())
	require.ErrorIs(t, err, errcode.Unavailable)
	j, err = e.store.Get(t.Context(), v.ID)
	require.NoError(t, err)
	require.Equal(t, "waiting for capacity: throttled", j.Detail)

	// Mixed: what needs an operator is reported, whatever came after it.
	ff.mu.Lock()
	ff.err = nil
	ff.failures = []fleet.Failure{{Count: 1, Reason: reason}, {Count: 1, Reason: "RESOURCE:ENI", Retryable: true}}
	ff.mu.Unlock()
	e.submit(`{"type":"echo"}`)
	e.clk.Advance(time.Minute)
	_, err = s.Scale(t.Context())
	require.NoError(t, err)
	j, err = e.store.Get(t.Context(), v.ID)
	require.NoError(t, err)
	require.Equal(t, "cannot provision workers: "+reason, j.Detail)
}

// A failure stops explaining anything once a check needs no more workers,
// before any provisioning succeeds: workers came up by other means, or the
// backlog drained. The note goes with it.
func TestScalerForgetsAFailureNoLongerInTheWay(t *testing.T) {
	t.Parallel()
	e := setup(t, nil)
	ff := &fakeFleet{failures: []fleet.Failure{{Count: 1, Reason: "RESOURCE:ENI", Retryable: true}}}
	s := dispatcher.NewScaler(fleet.New(ff), e.work, &dispatcher.ScalerOptions{PerWorker: 1, Max: 10, Clock: e.clk, Metrics: e.m, Store: e.store})
	detail := func(id string) string {
		j, err := e.store.Get(t.Context(), id)
		require.NoError(t, err)
		return j.Detail
	}
	v := e.submit(`{"type":"echo"}`)
	_, err := s.Scale(t.Context())
	require.NoError(t, err)
	require.Equal(t, "waiting for capacity: RESOURCE:ENI", detail(v.ID))

	// A worker the listing now shows (started before, or by another
	// replica) covers the backlog: nothing falls short, within the backoff.
	ff.mu.Lock()
	ff.listed = []fleet.Worker{{ID: "task/x", LastStatus: fleet.StatusRunning, DesiredStatus: fleet.StatusRunning}}
	ff.mu.Unlock()
	d, err := s.Scale(t.Context())
	require.NoError(t, err)
	require.Equal(t, dispatcher.Decision{Backlog: 1, Active: 1, Desired: 1}, d)
	last, why := s.Last()
	require.Equal(t, d, last)
	require.Empty(t, why, "the failure is cleared")
	require.Empty(t, detail(v.ID), "the note is cleared while the job still waits")
	require.Len(t, ff.asked, 1, "nothing provisioned")

	// It fails again once that worker is gone; then the backlog drains.
	ff.mu.Lock()
	ff.listed = nil
	ff.mu.Unlock()
	e.clk.Advance(time.Minute)
	_, err = s.Scale(t.Context())
	require.NoError(t, err)
	require.Equal(t, "RESOURCE:ENI", s.LastFailure())
	msgs, err := e.work.Receive(t.Context(), queue.ReceiveOptions{Max: 10})
	require.NoError(t, err)
	require.Len(t, msgs, 1)
	_, err = e.work.Delete(t.Context(), msgs[0].Handle)
	require.NoError(t, err)
	d, err = s.Scale(t.Context())
	require.NoError(t, err)
	require.Equal(t, dispatcher.Decision{}, d)
	require.Empty(t, s.LastFailure(), "no backlog, nothing to wait for")
	require.Len(t, ff.asked, 2)
}

// GET /v1/fleet: workers by state, the active ones, recent stops with their
// class, and why provisioning falls short.
func TestFleetView(t *testing.T) {
	t.Parallel()
	stoppedAt := epoch.Add(-time.Minute)
	oomExit := 137
	ff := &fakeFleet{
		listed: []fleet.Worker{
			{ID: "task/b", LastStatus: fleet.StatusRunning, DesiredStatus: fleet.StatusRunning},
			{ID: "task/a", LastStatus: fleet.StatusPending, DesiredStatus: fleet.StatusRunning},
			{ID: "task/oom", LastStatus: fleet.StatusStopped, DesiredStatus: fleet.StatusStopped, StoppedAt: stoppedAt,
				StopCode: fleet.StopEssentialContainerExited, Reason: "Essential container in task exited",
				ExitCode: &oomExit, ContainerReason: "OutOfMemoryError: Container killed due to memory usage"},
			{ID: "task/spot", LastStatus: fleet.StatusStopped, DesiredStatus: fleet.StatusStopped, StoppedAt: stoppedAt.Add(time.Second),
				StopCode: fleet.StopSpotInterruption, Reason: "Your Spot Task was interrupted."},
		},
		failures: []fleet.Failure{{Count: 1, Reason: "RESOURCE:ENI", Retryable: true}},
	}
	fl := fleet.New(ff)
	var s *dispatcher.Scaler
	e := setup(t, &dispatcher.APIOptions{Fleet: func(ctx context.Context) (*dispatcher.FleetView, error) {
		return dispatcher.FleetStatus(ctx, fl, s)
	}})
	s = dispatcher.NewScaler(fl, e.work, &dispatcher.ScalerOptions{PerWorker: 1, Max: 10, Clock: e.clk, Metrics: e.m})
	for range 3 {
		e.submit(`{"type":"echo"}`)
	}
	_, err := s.Scale(t.Context())
	require.NoError(t, err)

	r := e.call("GET", "/v1/fleet", nil)
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	var v dispatcher.FleetView
	require.NoError(t, json.Unmarshal(r.body, &v))
	require.Equal(t, map[string]int{fleet.StatusRunning: 1, fleet.StatusPending: 1, fleet.StatusStopped: 2}, v.Workers)
	require.Equal(t, []string{"task/a", "task/b"}, []string{v.Active[0].ID, v.Active[1].ID})
	require.Len(t, v.RecentStops, 2)
	require.Equal(t, "task/spot", v.RecentStops[0].ID, "newest first")
	require.Equal(t, fleet.StopSpot, v.RecentStops[0].Class)
	require.Equal(t, fleet.StopOOM, v.RecentStops[1].Class)
	require.Contains(t, v.RecentStops[1].ContainerReason, "OutOfMemoryError")
	require.Equal(t, 137, *v.RecentStops[1].ExitCode)
	require.Equal(t, &dispatcher.ScalerView{Backlog: 3, Active: 2, Desired: 3, WaitingFor: "RESOURCE:ENI"}, v.Scaler)

	// A dispatcher without a fleet says so.
	r = setup(t, nil).call("GET", "/v1/fleet", nil)
	require.Equal(t, http.StatusNotFound, r.status)
	require.Equal(t, "application/problem+json", r.header.Get("Content-Type"))
}

// The cached view lists the fleet once per ttl, whatever the requests.
func TestCachedFleetStatus(t *testing.T) {
	t.Parallel()
	ff := &fakeFleet{listed: []fleet.Worker{{ID: "task/a", LastStatus: fleet.StatusRunning, DesiredStatus: fleet.StatusRunning}}}
	view := dispatcher.CachedFleetStatus(fleet.New(ff), nil, time.Hour)
	for range 5 {
		v, err := view(t.Context())
		require.NoError(t, err)
		require.Equal(t, 1, v.Workers[fleet.StatusRunning])
	}
	require.Equal(t, 1, ff.lists())
	fresh := dispatcher.CachedFleetStatus(fleet.New(ff), nil, 0)
	for range 2 {
		_, err := fresh(t.Context())
		require.NoError(t, err)
	}
	require.Equal(t, 3, ff.lists())
}
