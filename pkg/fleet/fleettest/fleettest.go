// Package fleettest is the conformance suite for fleet.Driver adapters.
//
// Every adapter's conformance_test.go calls Run with a harness that makes a
// fresh, isolated fleet per test (its own registry or cluster, its own
// events queue), cleaned up with t.Cleanup. The suite drives the adapter
// through fleet.Fleet and pins down the contract in package fleet's doc:
// provisioning and its split into calls of fleet.MaxProvision, the workers
// List shows, Stop and its idempotence, unknown ids, the "ECS Task State
// Change" events a worker's life produces, use after Close and cancelled
// contexts.
//
// Beyond fleet's package doc, the suite pins these details, which every
// adapter must share:
//
//   - Provision of a small n on an idle fleet starts n distinct workers with
//     no failures; List then shows each as active with CreatedAt set, and
//     StartedAt set once it is RUNNING.
//   - Events come through Harness.Events as JSON that fleet.ParseEvent
//     reads. A worker's first RUNNING event names its id, DesiredStatus
//     RUNNING and its CreatedAt and StartedAt.
//   - After Stop(id, reason), a STOPPED event arrives with DesiredStatus
//     STOPPED, StopCode UserInitiated, Reason equal to the reason given, an
//     exit code and StoppedAt; List stops showing the worker as active.
//   - A worker that exits by itself with code c (Harness.Crash) produces a
//     STOPPED event with ExitCode c and StopCode EssentialContainerExited.
//   - A worker's events have Versions that grow with its life: each
//     RUNNING < stopping (DesiredStatus STOPPED, not yet STOPPED) < STOPPED.
//   - A pre-cancelled context fails Provision, List and Stop with
//     errcode.Canceled (errcode.Of) and starts or stops nothing.
package fleettest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobfleet/jobfleet/pkg/errcode"
	"github.com/jobfleet/jobfleet/pkg/fleet"
	"github.com/jobfleet/jobfleet/pkg/queue"
)

// DefaultWait is how long the suite waits for a state change when the
// harness does not say.
const DefaultWait = 30 * time.Second

// Harness is one test's fleet.
type Harness struct {
	Fleet *fleet.Fleet
	// Events is the queue where the fleet's state-change events arrive, or
	// nil if the adapter cannot emit them in tests.
	Events *queue.Queue
	// Crash makes the worker id exit by itself with exitCode, or is nil if
	// the adapter cannot do that in tests.
	Crash func(id string, exitCode int)
	// Wait bounds how long the suite waits for a worker to start or stop;
	// 0 means DefaultWait.
	Wait time.Duration
}

// Run runs the suite. newHarness must return a fresh fleet that no other
// test uses, with room for at least fleet.MaxProvision+2 workers.
func Run(t *testing.T, newHarness func(t *testing.T) Harness) {
	cases := []struct {
		name string
		fn   func(t *testing.T, s *suite)
	}{
		{"ProvisionListsWorkers", testProvisionLists},
		{"ProvisionMoreThanMaxProvision", testProvisionSplit},
		{"ProvisionInvalidCount", testProvisionInvalid},
		{"RunningEventAfterProvision", testRunningEvent},
		{"StopEmitsStoppedEvent", testStop},
		{"StopTwice", testStopTwice},
		{"StopUnknownIsNotFound", testStopUnknown},
		{"CrashReportsExitCode", testCrash},
		{"EventVersionsGrow", testVersions},
		{"UseAfterClose", testUseAfterClose},
		{"CancelledContext", testCancelled},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			require.NotNil(t, h.Fleet, "harness returned no fleet")
			s := &suite{t: t, h: h, f: h.Fleet, wait: h.Wait}
			if s.wait <= 0 {
				s.wait = DefaultWait
			}
			// Stop what the case started, before the harness's own cleanup
			// (registered earlier, so run later) closes the fleet.
			t.Cleanup(s.stopAll)
			c.fn(t, s)
		})
	}
}

type suite struct {
	t    *testing.T
	h    Harness
	f    *fleet.Fleet
	wait time.Duration

	mu      sync.Mutex
	started []string
	events  []fleet.Event // every event received, in arrival order
}

func (s *suite) stopAll() {
	s.mu.Lock()
	ids := append([]string(nil), s.started...)
	s.mu.Unlock()
	// t.Context is done by now: bound the cleanup on its own.
	ctx, cancel := context.WithTimeout(context.Background(), s.wait)
	defer cancel()
	for _, id := range ids {
		if err := s.f.Stop(ctx, id, "test cleanup"); err != nil && !errors.Is(err, errcode.Closed) {
			s.t.Errorf("cleanup: stop %s: %v", id, err)
		}
	}
}

func requireCode(t *testing.T, want errcode.Code, err error, format string, args ...any) {
	t.Helper()
	what := fmt.Sprintf(format, args...)
	require.Error(t, err, what)
	require.Equal(t, want, errcode.Of(err), "%s: error %q has code %v, want %v", what, err, errcode.Of(err), want)
	if want != errcode.Canceled {
		require.ErrorIs(t, err, want, what)
	}
}

// provision starts n workers and checks they are distinct.
func (s *suite) provision(n int) []fleet.Worker {
	s.t.Helper()
	p, err := s.f.Provision(s.t.Context(), n)
	s.mu.Lock()
	for _, w := range p.Workers {
		s.started = append(s.started, w.ID)
	}
	s.mu.Unlock()
	require.NoError(s.t, err)
	require.Empty(s.t, p.Failures, "provisioning %d workers on an idle fleet", n)
	require.Len(s.t, p.Workers, n)
	ids := map[string]bool{}
	for _, w := range p.Workers {
		require.NotEmpty(s.t, w.ID)
		require.False(s.t, ids[w.ID], "worker id %s returned twice", w.ID)
		ids[w.ID] = true
		require.NotEqual(s.t, fleet.StatusStopped, w.LastStatus, "a fresh worker %s", w.ID)
	}
	return p.Workers
}

// eventually polls cond until it holds or the wait runs out.
func (s *suite) eventually(what string, cond func() bool) {
	s.t.Helper()
	deadline := time.Now().Add(s.wait)
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			s.t.Fatalf("gave up after %s waiting for %s", s.wait, what)
		}
		select {
		case <-tick.C:
		case <-s.t.Context().Done():
			s.t.Fatalf("test ended waiting for %s", what)
		}
	}
}

func (s *suite) list() map[string]fleet.Worker {
	s.t.Helper()
	ws, err := s.f.List(s.t.Context())
	require.NoError(s.t, err)
	out := make(map[string]fleet.Worker, len(ws))
	for _, w := range ws {
		require.NotContains(s.t, out, w.ID, "List returned %s twice", w.ID)
		out[w.ID] = w
	}
	return out
}

// awaitEvent receives events until one matches, and returns it. Events
// already received count.
func (s *suite) awaitEvent(what string, match func(fleet.Event) bool) fleet.Event {
	s.t.Helper()
	require.NotNil(s.t, s.h.Events, "awaitEvent needs an events queue")
	for _, e := range s.events {
		if match(e) {
			return e
		}
	}
	deadline := time.Now().Add(s.wait)
	for time.Now().Before(deadline) {
		msgs, err := s.h.Events.Receive(s.t.Context(), queue.ReceiveOptions{Max: queue.MaxBatch, Wait: time.Second})
		require.NoError(s.t, err)
		var found fleet.Event
		ok := false
		for _, m := range msgs {
			e, err := fleet.ParseEvent(m.Body)
			require.NoError(s.t, err, "an event the fleet published does not parse: %s", m.Body)
			require.NotEmpty(s.t, e.EventID, "event without an id: %s", m.Body)
			s.events = append(s.events, e)
			if !ok && match(e) {
				found, ok = e, true
			}
			res, err := s.h.Events.Delete(s.t.Context(), m.Handle)
			require.NoError(s.t, err)
			require.NoError(s.t, res[0])
		}
		if ok {
			return found
		}
	}
	s.t.Fatalf("gave up after %s waiting for an event: %s", s.wait, what)
	return fleet.Event{}
}

func (s *suite) eventsOf(id string) []fleet.Event {
	var out []fleet.Event
	for _, e := range s.events {
		if e.WorkerID == id {
			out = append(out, e)
		}
	}
	return out
}

func stoppedEvent(id string) func(fleet.Event) bool {
	return func(e fleet.Event) bool { return e.WorkerID == id && e.Stopped() }
}

func runningEvent(id string) func(fleet.Event) bool {
	return func(e fleet.Event) bool {
		return e.WorkerID == id && e.LastStatus == fleet.StatusRunning && !e.Stopping()
	}
}

// awaitRunning waits until the worker runs: its RUNNING event, or List.
func (s *suite) awaitRunning(id string) {
	s.t.Helper()
	if s.h.Events != nil {
		s.awaitEvent("RUNNING of "+id, runningEvent(id))
		return
	}
	s.eventually(id+" RUNNING in List", func() bool {
		return s.list()[id].LastStatus == fleet.StatusRunning
	})
}

// awaitGone waits until List no longer shows the worker as active.
func (s *suite) awaitGone(id string) {
	s.t.Helper()
	s.eventually(id+" no longer active in List", func() bool {
		w, ok := s.list()[id]
		return !ok || !w.Active()
	})
}

func testProvisionLists(t *testing.T, s *suite) {
	before := time.Now()
	ws := s.provision(3)
	for _, w := range ws {
		s.awaitRunning(w.ID)
	}
	listed := s.list()
	for _, w := range ws {
		l, ok := listed[w.ID]
		require.True(t, ok, "List does not show %s", w.ID)
		require.True(t, l.Active(), "worker %s is %s/%s", w.ID, l.LastStatus, l.DesiredStatus)
		require.Equal(t, fleet.StatusRunning, l.DesiredStatus)
		require.False(t, l.CreatedAt.IsZero(), "CreatedAt of %s", w.ID)
		require.WithinRange(t, l.CreatedAt, before.Add(-time.Minute), time.Now().Add(time.Minute))
		if l.LastStatus == fleet.StatusRunning {
			require.False(t, l.StartedAt.IsZero(), "StartedAt of running %s", w.ID)
			require.False(t, l.StartedAt.Before(l.CreatedAt), "%s started before it was created", w.ID)
		}
		require.True(t, l.StoppedAt.IsZero())
	}
}

func testProvisionSplit(t *testing.T, s *suite) {
	n := fleet.MaxProvision + 2
	ws := s.provision(n)
	listed := s.list()
	for _, w := range ws {
		require.True(t, listed[w.ID].Active(), "worker %s not active in List", w.ID)
	}
}

func testProvisionInvalid(t *testing.T, s *suite) {
	for _, n := range []int{0, -1} {
		p, err := s.f.Provision(t.Context(), n)
		requireCode(t, errcode.InvalidArgument, err, "provision %d", n)
		require.Empty(t, p.Workers)
	}
	for _, w := range s.list() {
		require.False(t, w.Active(), "an invalid Provision started %s", w.ID)
	}
}

func testRunningEvent(t *testing.T, s *suite) {
	if s.h.Events == nil {
		t.Skip("the adapter emits no events in tests")
	}
	ws := s.provision(2)
	for _, w := range ws {
		e := s.awaitEvent("RUNNING of "+w.ID, runningEvent(w.ID))
		require.Equal(t, fleet.StatusRunning, e.DesiredStatus)
		require.False(t, e.CreatedAt.IsZero(), "CreatedAt")
		require.False(t, e.StartedAt.IsZero(), "StartedAt")
		require.False(t, e.Time.IsZero(), "envelope time")
		require.Greater(t, e.Version, int64(0))
		require.Nil(t, e.ExitCode)
		require.Empty(t, e.StopCode)
	}
}

func testStop(t *testing.T, s *suite) {
	ws := s.provision(2)
	id, other := ws[0].ID, ws[1].ID
	s.awaitRunning(id)
	s.awaitRunning(other)
	const reason = "scale in: conformance test"
	require.NoError(t, s.f.Stop(t.Context(), id, reason))
	if s.h.Events != nil {
		e := s.awaitEvent("STOPPED of "+id, stoppedEvent(id))
		require.Equal(t, fleet.StatusStopped, e.DesiredStatus)
		require.Equal(t, fleet.StopUserInitiated, e.StopCode)
		require.Equal(t, reason, e.Reason)
		require.NotNil(t, e.ExitCode, "a stopped worker's event has its exit code")
		require.False(t, e.StoppedAt.IsZero(), "StoppedAt")
		require.False(t, e.StoppedAt.Before(e.StartedAt), "stopped before it started")
	}
	s.awaitGone(id)
	w, ok := s.list()[id]
	if ok {
		require.Equal(t, fleet.StatusStopped, w.DesiredStatus)
		if w.LastStatus == fleet.StatusStopped {
			require.Equal(t, fleet.StopUserInitiated, w.StopCode)
			require.Equal(t, reason, w.Reason)
			require.False(t, w.StoppedAt.IsZero())
		}
	}
	// The other worker is untouched.
	require.True(t, s.list()[other].Active(), "stopping %s stopped %s", id, other)
}

func testStopTwice(t *testing.T, s *suite) {
	id := s.provision(1)[0].ID
	s.awaitRunning(id)
	// Twice at once, then again after it stopped.
	require.NoError(t, s.f.Stop(t.Context(), id, "first"))
	require.NoError(t, s.f.Stop(t.Context(), id, "second"))
	if s.h.Events != nil {
		e := s.awaitEvent("STOPPED of "+id, stoppedEvent(id))
		require.Equal(t, "first", e.Reason, "a second Stop must not change the reason")
	}
	s.awaitGone(id)
	require.NoError(t, s.f.Stop(t.Context(), id, "third"))
}

func testStopUnknown(t *testing.T, s *suite) {
	for _, id := range []string{"no-such-worker", "unknown-host/4194305", strings.Repeat("x", 300)} {
		requireCode(t, errcode.NotFound, s.f.Stop(t.Context(), id, "why"), "stop %q", id)
	}
	requireCode(t, errcode.InvalidArgument, s.f.Stop(t.Context(), "", "why"), "stop empty id")
}

func testCrash(t *testing.T, s *suite) {
	if s.h.Crash == nil {
		t.Skip("the adapter cannot crash a worker in tests")
	}
	ws := s.provision(2)
	id := ws[0].ID
	s.awaitRunning(id)
	s.h.Crash(id, 3)
	if s.h.Events != nil {
		e := s.awaitEvent("STOPPED of "+id, stoppedEvent(id))
		require.NotNil(t, e.ExitCode)
		require.Equal(t, 3, *e.ExitCode)
		require.Equal(t, fleet.StopEssentialContainerExited, e.StopCode)
		require.Equal(t, fleet.StatusStopped, e.DesiredStatus)
		require.False(t, e.StoppedAt.IsZero())
	}
	s.awaitGone(id)
	if w, ok := s.list()[id]; ok && w.LastStatus == fleet.StatusStopped {
		require.Equal(t, fleet.StopEssentialContainerExited, w.StopCode)
	}
	require.True(t, s.list()[ws[1].ID].Active())
	// Stopping a crashed worker succeeds.
	require.NoError(t, s.f.Stop(t.Context(), id, "after crash"))
}

func testVersions(t *testing.T, s *suite) {
	if s.h.Events == nil {
		t.Skip("the adapter emits no events in tests")
	}
	id := s.provision(1)[0].ID
	running := s.awaitEvent("RUNNING of "+id, runningEvent(id))
	require.NoError(t, s.f.Stop(t.Context(), id, "versions"))
	stopped := s.awaitEvent("STOPPED of "+id, stoppedEvent(id))
	require.Greater(t, stopped.Version, running.Version)

	stage := func(e fleet.Event) int {
		switch {
		case e.Stopped():
			return 2
		case e.Stopping():
			return 1
		default:
			return 0
		}
	}
	evs := s.eventsOf(id)
	for _, a := range evs {
		for _, b := range evs {
			if stage(a) < stage(b) {
				require.Less(t, a.Version, b.Version, "a %s/%s event must have a lower version than a %s/%s one",
					a.LastStatus, a.DesiredStatus, b.LastStatus, b.DesiredStatus)
			}
			if a.Version == b.Version {
				require.Equal(t, a.LastStatus, b.LastStatus, "events sharing version %d differ", a.Version)
				require.Equal(t, a.DesiredStatus, b.DesiredStatus, "events sharing version %d differ", a.Version)
			}
		}
	}
}

func testUseAfterClose(t *testing.T, s *suite) {
	ctx := t.Context()
	require.NoError(t, s.f.Close())
	_, err := s.f.Provision(ctx, 1)
	requireCode(t, errcode.Closed, err, "provision")
	_, err = s.f.List(ctx)
	requireCode(t, errcode.Closed, err, "list")
	requireCode(t, errcode.Closed, s.f.Stop(ctx, "any", "why"), "stop")
	require.NoError(t, s.f.Close(), "a second Close")
}

func testCancelled(t *testing.T, s *suite) {
	id := s.provision(1)[0].ID
	s.awaitRunning(id)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	p, err := s.f.Provision(ctx, 2)
	requireCode(t, errcode.Canceled, err, "provision")
	require.Empty(t, p.Workers)
	_, err = s.f.List(ctx)
	requireCode(t, errcode.Canceled, err, "list")
	requireCode(t, errcode.Canceled, s.f.Stop(ctx, id, "cancelled"), "stop")

	listed := s.list()
	require.True(t, listed[id].Active(), "a Stop with a cancelled context stopped the worker")
	active := 0
	for _, w := range listed {
		if w.Active() {
			active++
		}
	}
	require.Equal(t, 1, active, "a Provision with a cancelled context started workers")
}
