package faultfleet_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/jobfleet/jobfleet/pkg/errcode"
	"github.com/jobfleet/jobfleet/pkg/fleet"
	"github.com/jobfleet/jobfleet/pkg/fleet/faultfleet"
	"github.com/jobfleet/jobfleet/pkg/fleet/fleettest"
	"github.com/jobfleet/jobfleet/pkg/fleet/procfleet"
	"github.com/jobfleet/jobfleet/pkg/queue/memqueue"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fleetDriver is a fleet.Driver over a Fleet: procfleet keeps its driver to
// itself, and a Fleet asked for at most fleet.MaxProvision workers makes
// one call of its driver.
type fleetDriver struct{ f *fleet.Fleet }

func (d fleetDriver) Provision(ctx context.Context, n int) (fleet.Provisioned, error) {
	return d.f.Provision(ctx, n)
}
func (d fleetDriver) List(ctx context.Context) ([]fleet.Worker, error) { return d.f.List(ctx) }
func (d fleetDriver) Stop(ctx context.Context, id, reason string) error {
	return d.f.Stop(ctx, id, reason)
}
func (d fleetDriver) Close() error { return d.f.Close() }

// Without faults the wrapper is transparent: it passes the suite over local
// processes (sleep(1) as the worker, so workers cannot be made to crash
// with a given code: that case skips).
func TestConformanceWithoutFaults(t *testing.T) {
	t.Parallel()
	sleepCmd, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep command to run as a worker")
	}
	fleettest.Run(t, func(t *testing.T) fleettest.Harness {
		broker := memqueue.New(nil)
		t.Cleanup(func() { require.NoError(t, broker.Close()) })
		require.NoError(t, broker.CreateQueue(t.Context(), "events", memqueue.Config{}))
		events, err := broker.Open(t.Context(), "events")
		require.NoError(t, err)
		t.Cleanup(func() { events.Close() })
		pf, err := procfleet.Open(t.Context(), filepath.Join(t.TempDir(), "fleet.db"), &procfleet.Options{
			Command:     []string{sleepCmd, "600"},
			Events:      events,
			MaxWorkers:  fleet.MaxProvision + 2,
			StopTimeout: 10 * time.Second,
		})
		require.NoError(t, err)
		f, _ := faultfleet.New(fleetDriver{pf}, nil)
		t.Cleanup(func() { require.NoError(t, f.Close()) })
		return fleettest.Harness{Fleet: f, Events: events, Wait: 30 * time.Second}
	})
}

// fake is a fleet.Driver that records what reaches it.
type fake struct {
	mu      sync.Mutex
	asked   []int // Provision's n, call by call
	lists   int
	stopped []string
	next    int
}

func (f *fake) Provision(_ context.Context, n int) (fleet.Provisioned, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked = append(f.asked, n)
	var p fleet.Provisioned
	for range n {
		f.next++
		p.Workers = append(p.Workers, fleet.Worker{ID: fmt.Sprintf("task/%d", f.next), LastStatus: fleet.StatusProvisioning, DesiredStatus: fleet.StatusRunning})
	}
	return p, nil
}

func (f *fake) List(context.Context) ([]fleet.Worker, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lists++
	return []fleet.Worker{{ID: "task/0", LastStatus: fleet.StatusRunning, DesiredStatus: fleet.StatusRunning}}, nil
}

func (f *fake) Stop(_ context.Context, id, _ string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stopped = append(f.stopped, id)
	return nil
}

func (f *fake) Close() error { return nil }

type env struct {
	t    *testing.T
	fake *fake
	f    *fleet.Fleet // through the faults
	fd   *faultfleet.Driver

	mu    sync.Mutex
	slept []time.Duration
}

func setup(t *testing.T, faults faultfleet.Faults) *env {
	t.Helper()
	e := &env{t: t, fake: &fake{}}
	e.f, e.fd = faultfleet.New(e.fake, &faultfleet.Options{
		Faults: faults,
		Rand:   rand.New(rand.NewPCG(7, 8)),
		Sleep: func(ctx context.Context, d time.Duration) error {
			e.mu.Lock()
			defer e.mu.Unlock()
			e.slept = append(e.slept, d)
			return ctx.Err()
		},
	})
	t.Cleanup(func() { e.f.Close() })
	return e
}

// every makes each call once through the faults and returns their errors.
func (e *env) every() []error {
	ctx := context.Background()
	_, perr := e.f.Provision(ctx, 3)
	_, lerr := e.f.List(ctx)
	serr := e.f.Stop(ctx, "task/1", "scale-in")
	return []error{perr, lerr, serr}
}

// counts returns how many workers p started and how many it reports
// failed.
func counts(p fleet.Provisioned) (started, failed int) {
	for _, f := range p.Failures {
		failed += f.Count
	}
	return len(p.Workers), failed
}

func TestUnavailable(t *testing.T) {
	t.Parallel()
	e := setup(t, faultfleet.Faults{Unavailable: 1, NoCapacity: 1})
	for i, err := range e.every() {
		require.Equal(t, errcode.Unavailable, errcode.Of(err), "call %d: %v", i, err)
		require.True(t, errcode.Retryable(err))
		require.NotContains(t, err.Error(), "Throttling")
	}
	require.Empty(t, e.fake.asked, "nothing reached the fleet")
	require.Zero(t, e.fake.lists)
	require.Empty(t, e.fake.stopped)
	require.Equal(t, faultfleet.Stats{Unavailable: 3}, e.fd.Stats(), "a refused call refuses no worker alone")

	// Faults change at once.
	e.fd.SetFaults(faultfleet.Faults{})
	require.Equal(t, faultfleet.Faults{}, e.fd.Faults())
	for _, err := range e.every() {
		require.NoError(t, err)
	}
	require.Equal(t, []int{3}, e.fake.asked)
}

func TestThrottled(t *testing.T) {
	t.Parallel()
	e := setup(t, faultfleet.Faults{Throttled: 1})
	for i, err := range e.every() {
		require.Equal(t, errcode.Unavailable, errcode.Of(err), "call %d: %v", i, err)
		require.Contains(t, err.Error(), "ThrottlingException")
	}
	require.Empty(t, e.fake.asked)
	require.Zero(t, e.fake.lists)
	require.Empty(t, e.fake.stopped)
	require.Equal(t, faultfleet.Stats{Throttled: 3}, e.fd.Stats())
}

// With every fraction 0 the wrapper changes nothing, and waits for nothing
// even with a latency set.
func TestNoFaults(t *testing.T) {
	t.Parallel()
	e := setup(t, faultfleet.Faults{MaxLatency: time.Hour})
	p, err := e.f.Provision(context.Background(), 25)
	require.NoError(t, err)
	require.Len(t, p.Workers, 25)
	require.Empty(t, p.Failures)
	require.Equal(t, []int{10, 10, 5}, e.fake.asked)
	ws, err := e.f.List(context.Background())
	require.NoError(t, err)
	require.Len(t, ws, 1)
	require.NoError(t, e.f.Stop(context.Background(), "task/1", ""))
	require.Equal(t, []string{"task/1"}, e.fake.stopped)
	require.Empty(t, e.slept)
	require.Equal(t, faultfleet.Stats{}, e.fd.Stats())
}

// Every worker refused: all come back as retryable failures, without an
// error, and the fleet is not asked.
func TestNoCapacityAll(t *testing.T) {
	t.Parallel()
	e := setup(t, faultfleet.Faults{NoCapacity: 1})
	p, err := e.f.Provision(context.Background(), 7)
	require.NoError(t, err)
	started, failed := counts(p)
	require.Zero(t, started)
	require.Equal(t, 7, failed)
	for _, f := range p.Failures {
		require.True(t, f.Retryable)
		require.Contains(t, []string{faultfleet.ReasonCapacity, faultfleet.ReasonENI}, f.Reason)
	}
	require.Empty(t, e.fake.asked)
	require.Equal(t, 7, e.fd.Stats().NotStarted)

	// List and Stop have no workers to refuse.
	_, err = e.f.List(context.Background())
	require.NoError(t, err)
	require.NoError(t, e.f.Stop(context.Background(), "task/9", ""))
}

// Some workers refused: the fleet is asked for the others, which start,
// and started plus failed add up to what was asked.
func TestNoCapacityPartial(t *testing.T) {
	t.Parallel()
	e := setup(t, faultfleet.Faults{NoCapacity: 0.4})
	reasons := map[string]int{}
	totalFailed := 0
	for range 20 {
		p, err := e.f.Provision(context.Background(), fleet.MaxProvision)
		require.NoError(t, err)
		started, failed := counts(p)
		require.Equal(t, fleet.MaxProvision, started+failed)
		require.Len(t, p.Failures, len(reasonsOf(p)), "one failure per reason")
		for _, f := range p.Failures {
			require.True(t, f.Retryable)
			require.Positive(t, f.Count)
			reasons[f.Reason] += f.Count
		}
		totalFailed += failed
	}
	asked := 0
	for _, n := range e.fake.asked {
		require.Positive(t, n)
		asked += n
	}
	require.Equal(t, 20*fleet.MaxProvision-totalFailed, asked, "the fleet was asked for the workers not refused")
	require.Equal(t, totalFailed, e.fd.Stats().NotStarted)
	require.Greater(t, totalFailed, 20)
	require.Less(t, totalFailed, 180)
	require.Positive(t, reasons[faultfleet.ReasonCapacity])
	require.Positive(t, reasons[faultfleet.ReasonENI])
	require.Len(t, reasons, 2)
}

func reasonsOf(p fleet.Provisioned) map[string]bool {
	m := map[string]bool{}
	for _, f := range p.Failures {
		m[f.Reason] = true
	}
	return m
}

func TestSlow(t *testing.T) {
	t.Parallel()
	e := setup(t, faultfleet.Faults{Slow: 1, MaxLatency: 3 * time.Second})
	for _, err := range e.every() {
		require.NoError(t, err, "a slow call goes through")
	}
	require.Len(t, e.slept, 3)
	for _, d := range e.slept {
		require.Positive(t, d)
		require.LessOrEqual(t, d, 3*time.Second)
	}
	require.Equal(t, faultfleet.Stats{Slow: 3}, e.fd.Stats())

	// A slow call whose context ends while it waits fails with it and does
	// not reach the fleet.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := e.f.Provision(ctx, 2)
	require.Equal(t, errcode.Canceled, errcode.Of(err))
	require.Equal(t, []int{3}, e.fake.asked)
}

// The default sleep waits on a real timer and ends with the context.
func TestRealSleep(t *testing.T) {
	t.Parallel()
	ff := &fake{}
	f, fd := faultfleet.New(ff, &faultfleet.Options{Faults: faultfleet.Faults{Slow: 1, MaxLatency: time.Hour}})
	defer f.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := f.Provision(ctx, 1)
	require.Equal(t, errcode.Canceled, errcode.Of(err))
	require.Less(t, time.Since(start), 10*time.Second, "returned when the context ended, not after the latency")
	require.Empty(t, ff.asked, "nothing started")
	require.Equal(t, 1, fd.Stats().Slow)
}

// The same seed hits the same calls and workers.
func TestDeterministic(t *testing.T) {
	t.Parallel()
	run := func() ([]string, faultfleet.Stats) {
		e := setup(t, faultfleet.Faults{Unavailable: 0.2, Throttled: 0.2, NoCapacity: 0.3, Slow: 0.3, MaxLatency: time.Second})
		var out []string
		for range 30 {
			p, err := e.f.Provision(context.Background(), 4)
			out = append(out, fmt.Sprintf("%v %d %+v", errcode.Of(err), len(p.Workers), p.Failures))
		}
		return out, e.fd.Stats()
	}
	out, s := run()
	require.Positive(t, s.Unavailable)
	require.Positive(t, s.Throttled)
	require.Positive(t, s.NotStarted)
	out2, s2 := run()
	require.Equal(t, out, out2)
	require.Equal(t, s, s2)
}
