package reaper_test

import (
	"context"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/jobfleet/jobfleet/pkg/clock"
	"github.com/jobfleet/jobfleet/pkg/errcode"
	"github.com/jobfleet/jobfleet/pkg/fleet"
	"github.com/jobfleet/jobfleet/pkg/job"
	"github.com/jobfleet/jobfleet/pkg/jobstore"
	"github.com/jobfleet/jobfleet/pkg/jobstore/sqlitejobstore"
	"github.com/jobfleet/jobfleet/pkg/metrics"
	"github.com/jobfleet/jobfleet/pkg/queue"
	"github.com/jobfleet/jobfleet/pkg/queue/sqlitequeue"
	"github.com/jobfleet/jobfleet/pkg/reaper"
	"github.com/jobfleet/jobfleet/pkg/work"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var (
	t0     = time.Date(2030, 5, 6, 7, 8, 9, 0, time.UTC)
	policy = job.DefaultPolicy
)

type env struct {
	t                        *testing.T
	clock                    *clock.Fake
	store                    *jobstore.Store
	work, dlq, events, evDLQ *queue.Queue
	m                        *metrics.Metrics
	r                        *reaper.Reaper
}

func setup(t *testing.T) *env {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	e := &env{t: t, clock: clock.NewFake(t0), m: metrics.New()}
	var err error
	e.store, err = sqlitejobstore.Open(ctx, filepath.Join(dir, "jobs.db"), &sqlitejobstore.Options{Clock: e.clock})
	require.NoError(t, err)
	t.Cleanup(func() { e.store.Close() })
	qdb, err := sqlitequeue.OpenDB(ctx, filepath.Join(dir, "queue.db"), &sqlitequeue.Options{Clock: e.clock})
	require.NoError(t, err)
	t.Cleanup(func() { qdb.Close() })
	for _, q := range []struct {
		name string
		cfg  sqlitequeue.Config
	}{
		{"work-dlq", sqlitequeue.Config{}},
		{"events-dlq", sqlitequeue.Config{}},
		{"work", sqlitequeue.Config{Visibility: time.Minute, DeadLetter: "work-dlq", MaxReceives: 3}},
		{"events", sqlitequeue.Config{Visibility: time.Minute, DeadLetter: "events-dlq", MaxReceives: 5}},
	} {
		require.NoError(t, qdb.CreateQueue(ctx, q.name, q.cfg))
	}
	open := func(name string) *queue.Queue {
		q, err := qdb.Open(ctx, name)
		require.NoError(t, err)
		return q
	}
	e.work, e.dlq, e.events, e.evDLQ = open("work"), open("work-dlq"), open("events"), open("events-dlq")
	e.r = e.newReaper()
	return e
}

func (e *env) newReaper() *reaper.Reaper {
	return reaper.New(e.store, e.work, &reaper.Options{
		Policy: policy, Sweep: time.Hour, WorkDLQ: e.dlq, Events: e.events, EventsDLQ: e.evDLQ,
		EventsWait: 50 * time.Millisecond, Clock: e.clock, Metrics: e.m,
	})
}

func (e *env) submit(sub job.Submission) *job.Job {
	e.t.Helper()
	now := e.clock.Now()
	require.NoError(e.t, sub.Validate(job.DefaultLimits, now))
	j := policy.New(&sub, job.DefaultLimits, job.NewID(now), now)
	res, err := e.store.Create(context.Background(), j)
	require.NoError(e.t, err)
	require.NoError(e.t, res[0].Err)
	return j
}

// running submits a job and starts it as owner (no message involved).
func (e *env) running(owner string, sub job.Submission) *job.Job {
	e.t.Helper()
	j := e.submit(sub)
	r, err := e.store.ApplyOne(context.Background(), policy.Start(job.Message{ID: j.ID}, owner, e.clock.Now()))
	require.NoError(e.t, err)
	return r
}

func (e *env) get(id string) *job.Job {
	e.t.Helper()
	j, err := e.store.Get(context.Background(), id)
	require.NoError(e.t, err)
	return j
}

func (e *env) sweep() reaper.SweepResult {
	e.t.Helper()
	res, err := e.r.Sweep(context.Background())
	require.NoError(e.t, err)
	return res
}

// messages receives every visible work message (and deletes them).
func (e *env) messages(q *queue.Queue) []job.Message {
	e.t.Helper()
	ctx := context.Background()
	var out []job.Message
	for {
		msgs, err := q.Receive(ctx, queue.ReceiveOptions{Max: 10})
		require.NoError(e.t, err)
		if len(msgs) == 0 {
			return out
		}
		for _, m := range msgs {
			jm, err := job.DecodeMessage(m.Body)
			require.NoError(e.t, err)
			out = append(out, jm)
			_, err = q.Delete(ctx, m.Handle)
			require.NoError(e.t, err)
		}
	}
}

func TestExpiredLeaseReclaimed(t *testing.T) {
	t.Parallel()
	e := setup(t)
	dead := e.running("dead", job.Submission{Type: "echo"})
	e.clock.Advance(10 * time.Second)
	alive := e.running("alive", job.Submission{Type: "echo"})
	require.Zero(t, e.sweep().Reclaimed, "nothing expired yet")

	e.clock.Set(dead.LeaseUntil.Add(time.Millisecond))
	res := e.sweep()
	require.Equal(t, 1, res.Reclaimed)
	q := e.get(dead.ID)
	require.Equal(t, job.Queued, q.Status)
	require.Equal(t, 1, q.Failures)
	require.Equal(t, job.OutcomeLeaseExpired, q.History[0].Outcome)
	require.Equal(t, job.Running, e.get(alive.ID).Status)
	require.Equal(t, []job.Message{{ID: dead.ID, Attempt: 1}}, e.messages(e.work), "re-queued with a message at once")
	require.Equal(t, 1.0, testutil.ToFloat64(e.m.Reclaims.WithLabelValues("lease_expired")))
	require.Zero(t, e.sweep().Reclaimed, "settled once")
}

func TestReclaimExhaustedOrCancelled(t *testing.T) {
	t.Parallel()
	e := setup(t)
	last := e.running("dead", job.Submission{Type: "echo", MaxAttempts: 1})
	cancelled := e.running("dead", job.Submission{Type: "echo"})
	c, _ := policy.RequestCancel(cancelled, e.clock.Now())
	_, err := e.store.ApplyOne(context.Background(), c)
	require.NoError(t, err)
	e.clock.Advance(policy.Lease + time.Second)
	require.Equal(t, 2, e.sweep().Reclaimed)
	f := e.get(last.ID)
	require.Equal(t, job.Failed, f.Status)
	require.Contains(t, f.Error, "attempts exhausted")
	require.Equal(t, job.Cancelled, e.get(cancelled.ID).Status)
	require.Empty(t, e.messages(e.work))
}

func TestDeadlineEnforced(t *testing.T) {
	t.Parallel()
	e := setup(t)
	j := e.running("w1", job.Submission{Type: "echo", Timeout: job.Duration(20 * time.Second), MaxAttempts: 1})
	// The owner keeps renewing; the renewal moves due_at to the deadline.
	e.clock.Advance(15 * time.Second)
	r, err := e.store.ApplyOne(context.Background(), policy.Renew(j, e.clock.Now(), nil))
	require.NoError(t, err)
	require.Equal(t, j.StartedAt.Add(20*time.Second), r.DueAt)
	e.clock.Advance(6 * time.Second)
	require.Equal(t, 1, e.sweep().TimedOut)
	f := e.get(j.ID)
	require.Equal(t, job.Failed, f.Status)
	require.Equal(t, job.OutcomeTimeout, f.History[0].Outcome)
}

// A crash between the store write and the send leaves a QUEUED job with no
// message; the resend sweep sends it, backing off.
func TestResendLostMessage(t *testing.T) {
	t.Parallel()
	e := setup(t)
	j := e.submit(job.Submission{Type: "echo"}) // stored, never sent
	require.Zero(t, e.sweep().Resent)
	e.clock.Advance(policy.ResendAfter + time.Second)
	require.Equal(t, 1, e.sweep().Resent)
	require.Equal(t, []job.Message{{ID: j.ID, Attempt: 0}}, e.messages(e.work))
	q := e.get(j.ID)
	require.Equal(t, 1, q.Resends)
	require.Zero(t, e.sweep().Resent, "the deadline moved out")
	e.clock.Advance(2*policy.ResendAfter + time.Second)
	require.Equal(t, 1, e.sweep().Resent)
	require.Len(t, e.messages(e.work), 1)
}

func TestPromoteScheduled(t *testing.T) {
	t.Parallel()
	e := setup(t)
	runAt := t0.Add(time.Hour)
	j := e.submit(job.Submission{Type: "echo", RunAt: &runAt})
	require.Equal(t, job.Scheduled, j.Status)
	require.Zero(t, e.sweep().Promoted)
	e.clock.Set(runAt.Add(-30 * time.Second))
	require.Equal(t, 1, e.sweep().Promoted)
	require.Equal(t, job.Queued, e.get(j.ID).Status)
	d, err := e.work.Depth(context.Background())
	require.NoError(t, err)
	require.Equal(t, int64(1), d.Delayed, "its message waits for run_at")
	e.clock.Set(runAt)
	require.Equal(t, []job.Message{{ID: j.ID}}, e.messages(e.work))
}

// TestDeadLetters: a message a worker dead-lettered itself (with a reason)
// fails its job with the reason; a stale one leaves its job alone; an
// undecodable one is dropped; each is deleted from the DLQ.
func TestDeadLetters(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctx := context.Background()
	j := e.submit(job.Submission{Type: "echo", Key: "k"})
	moved := e.submit(job.Submission{Type: "echo"})
	// moved's job went on to a newer attempt: its old message is stale.
	r, err := e.store.ApplyOne(ctx, policy.Start(job.Message{ID: moved.ID}, "w", e.clock.Now()))
	require.NoError(t, err)
	_, err = e.store.ApplyOne(ctx, policy.Finish(r, e.clock.Now(), job.End{Outcome: job.OutcomeHandedBack}))
	require.NoError(t, err)
	withReason := work.Entry(j, e.clock.Now(), 0)
	withReason.Attributes = map[string]string{"reason": "a worker's own reason"}
	_, err = e.dlq.Send(ctx, withReason)
	require.NoError(t, err)
	_, err = work.Enqueue(ctx, e.dlq, e.clock.Now(), moved)
	require.NoError(t, err)
	_, err = e.dlq.Send(ctx, queue.SendEntry{Body: []byte("garbage"), Attributes: map[string]string{"reason": "undecodable"}})
	require.NoError(t, err)

	res := e.sweep()
	require.Equal(t, 1, res.DeadLettered)
	require.Zero(t, res.Redriven)
	f := e.get(j.ID)
	require.Equal(t, job.Failed, f.Status)
	require.Equal(t, "work message dead-lettered by a worker: a worker's own reason", f.Error)
	require.Equal(t, job.Queued, e.get(moved.ID).Status, "a stale dead letter leaves the job alone")
	d, err := e.dlq.Depth(ctx)
	require.NoError(t, err)
	require.Equal(t, queue.Depth{}, d, "the DLQ is drained")
	// The key was released with the failure.
	j2 := e.submit(job.Submission{Type: "echo", Key: "k"})
	require.Equal(t, job.Queued, j2.Status)
}

// TestRedrive: a message that used up its receives without starting its
// job (a store outage longer than the workers' give-backs) reaches the DLQ
// through redrive. The reaper brings the job's resend forward and the
// resend sweep sends the message again: at once the first time, then after
// the resend interval; at the dead letter after MaxRedrives the job fails.
// A start restarts the count.
func TestRedrive(t *testing.T) {
	t.Parallel()
	e := setup(t)
	e.r = reaper.New(e.store, e.work, &reaper.Options{Policy: policy, Sweep: time.Hour, WorkDLQ: e.dlq,
		MaxRedrives: 2, Clock: e.clock, Metrics: e.m})
	ctx := context.Background()
	j := e.submit(job.Submission{Type: "echo"})
	_, err := work.Enqueue(ctx, e.work, e.clock.Now(), j)
	require.NoError(t, err)
	// deadLetter receives the work message without deleting it until it
	// moves to the DLQ (MaxReceives: 3).
	deadLetter := func() {
		t.Helper()
		for range 3 {
			msgs, err := e.work.Receive(ctx, queue.ReceiveOptions{Max: 1, Visibility: time.Second})
			require.NoError(t, err)
			require.Len(t, msgs, 1)
			e.clock.Advance(2 * time.Second)
		}
		msgs, err := e.work.Receive(ctx, queue.ReceiveOptions{Max: 1})
		require.NoError(t, err)
		require.Empty(t, msgs, "moved to the DLQ")
	}
	visible := func() int64 {
		t.Helper()
		d, err := e.work.Depth(ctx)
		require.NoError(t, err)
		return d.Visible
	}

	deadLetter()
	res := e.sweep()
	require.Equal(t, 1, res.Redriven)
	require.Zero(t, res.DeadLettered)
	cur := e.get(j.ID)
	require.Equal(t, job.Queued, cur.Status, "a job that never started is not failed")
	require.Equal(t, 1, cur.DeadLetters)
	require.Contains(t, cur.Detail, "after 3 receives without starting; sent again")
	require.Equal(t, e.clock.Now(), cur.ResendAt, "the first time at once")
	require.Zero(t, visible(), "the dead-letter step sends nothing itself")
	e.clock.Advance(time.Second)
	res = e.sweep()
	require.Equal(t, 1, res.Resent, "the resend sweep sends it")
	require.Equal(t, int64(1), visible())

	deadLetter()
	res = e.sweep()
	require.Equal(t, 1, res.Redriven)
	require.Equal(t, 2, e.get(j.ID).DeadLetters)
	e.clock.Advance(policy.ResendAfter - time.Second)
	require.Zero(t, e.sweep().Resent, "held back as long as the resend interval it follows")
	e.clock.Advance(2 * time.Second)
	require.Equal(t, 1, e.sweep().Resent)

	deadLetter()
	res = e.sweep()
	require.Equal(t, 1, res.DeadLettered, "the third dead letter with MaxRedrives 2")
	f := e.get(j.ID)
	require.Equal(t, job.Failed, f.Status)
	require.Equal(t, "work message moved to the dead-letter queue after 3 receives without starting (sent again 2 times)", f.Error)
	d, err := e.dlq.Depth(ctx)
	require.NoError(t, err)
	require.Equal(t, queue.Depth{}, d, "the DLQ is drained")

	// A start restarts the count; so does a re-queue.
	k := e.submit(job.Submission{Type: "echo"})
	k, err = e.store.ApplyOne(ctx, policy.Redrive(k, e.clock.Now(), "x"))
	require.NoError(t, err)
	require.Equal(t, 1, k.DeadLetters)
	k, err = e.store.ApplyOne(ctx, policy.Start(job.Message{ID: k.ID}, "w", e.clock.Now()))
	require.NoError(t, err)
	require.Zero(t, k.DeadLetters)
}

// A dead letter of a job with a cancel pending (asked while it ran, and
// re-queued before its owner saw it) cancels it.
func TestDeadLetterCancelsPending(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctx := context.Background()
	j := e.running("w", job.Submission{Type: "echo"})
	handBack := policy.Finish(j, e.clock.Now(), job.End{Outcome: job.OutcomeHandedBack}) // before the owner sees the cancel
	c, ok := policy.RequestCancel(j, e.clock.Now())
	require.True(t, ok)
	_, err := e.store.ApplyOne(ctx, c)
	require.NoError(t, err)
	j, err = e.store.ApplyOne(ctx, handBack)
	require.NoError(t, err)
	require.Equal(t, job.Queued, j.Status)
	require.True(t, j.CancelRequested)
	_, err = work.Enqueue(ctx, e.dlq, e.clock.Now(), j)
	require.NoError(t, err)
	res := e.sweep()
	require.Zero(t, res.Redriven)
	require.Equal(t, job.Cancelled, e.get(j.ID).Status)
}

// A failure the store refuses with its long reason (the record too large?)
// is written with a short one, rather than keeping the dead letter forever.
func TestDeadLetterShortReason(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctx := context.Background()
	j := e.submit(job.Submission{Type: "echo"})
	m := work.Entry(j, e.clock.Now(), 0)
	m.Attributes = map[string]string{"reason": strings.Repeat("long reason ", 20)}
	_, err := e.dlq.Send(ctx, m)
	require.NoError(t, err)
	r := reaper.New(jobstore.New(refuseLongErrors{e.store.Driver()}, nil), e.work,
		&reaper.Options{Policy: policy, WorkDLQ: e.dlq, Clock: e.clock, Metrics: e.m})
	res, err := r.Sweep(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, res.DeadLettered)
	require.Equal(t, "work message dead-lettered", e.get(j.ID).Error)
}

// refuseLongErrors refuses, as invalid, a write that sets an error longer
// than 100 bytes.
type refuseLongErrors struct{ jobstore.Driver }

func (d refuseLongErrors) Apply(ctx context.Context, changes []job.Change) ([]jobstore.ChangeResult, error) {
	for _, c := range changes {
		if len(c.Set.Values.Error) > 100 {
			return []jobstore.ChangeResult{{Err: errcode.New(errcode.InvalidArgument, "item too large")}}, nil
		}
	}
	return d.Driver.Apply(ctx, changes)
}

// A dead letter whose job changed meanwhile (here: a note) stays in the
// DLQ for the next pass, which reads the job again.
func TestRedriveLosesARace(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctx := context.Background()
	j := e.submit(job.Submission{Type: "echo"})
	_, err := work.Enqueue(ctx, e.dlq, e.clock.Now(), j)
	require.NoError(t, err)
	racing := &noteFirst{Driver: e.store.Driver(), note: func() {
		_, err := e.store.ApplyOne(ctx, policy.Note(e.get(j.ID), e.clock.Now(), "waiting for capacity"))
		require.NoError(t, err)
	}}
	r := reaper.New(jobstore.New(racing, nil), e.work, &reaper.Options{Policy: policy, WorkDLQ: e.dlq, Clock: e.clock, Metrics: e.m})
	res, err := r.Sweep(ctx)
	require.NoError(t, err)
	require.Zero(t, res.Redriven)
	d, err := e.dlq.Depth(ctx)
	require.NoError(t, err)
	require.Equal(t, int64(1), d.InFlight, "kept for the next pass")
	e.clock.Advance(time.Minute)
	res, err = r.Sweep(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, res.Redriven)
}

// noteFirst runs note before the first Apply it passes on.
type noteFirst struct {
	jobstore.Driver
	once sync.Once
	note func()
}

func (d *noteFirst) Apply(ctx context.Context, changes []job.Change) ([]jobstore.ChangeResult, error) {
	d.once.Do(d.note)
	return d.Driver.Apply(ctx, changes)
}

func sendEvent(t *testing.T, q *queue.Queue, e fleet.Event) {
	t.Helper()
	res, err := q.Send(context.Background(), queue.SendEntry{Body: e.Marshal()})
	require.NoError(t, err)
	require.NoError(t, res[0].Err)
}

func exit(code int) *int { return &code }

// pollEvents handles events from the events queue until n were read, and
// returns how many jobs they reclaimed.
func (e *env) pollEvents(n int) int {
	e.t.Helper()
	events, reclaimed := 0, 0
	for events < n {
		res, err := e.r.PollEvents(context.Background())
		require.NoError(e.t, err)
		require.NotZero(e.t, res.Events)
		events += res.Events
		reclaimed += res.Reclaimed
	}
	return reclaimed
}

// A stopped worker's jobs are reclaimed at once; a Spot notice reclaims
// them already while the task still runs, and other stop requests leave
// them to the worker's drain until the task stops. Either way the STOPPED
// event is handled, counted once by class, and its duplicate skipped.
func TestStoppedWorkerJobsReclaimedAtOnce(t *testing.T) {
	t.Parallel()
	const exited = "Essential container in task exited"
	tests := []struct {
		name     string
		event    fleet.Event
		class    fleet.StopClass
		notice   bool // the notice (still RUNNING, desired STOPPED) reclaims
		failures int
	}{
		{"crash", fleet.Event{StopCode: fleet.StopEssentialContainerExited, ExitCode: exit(1), Reason: exited}, fleet.StopCrashed, false, 1},
		{"killed", fleet.Event{StopCode: fleet.StopEssentialContainerExited, ExitCode: exit(137), Reason: exited}, fleet.StopOOM, false, 1},
		{"oom", fleet.Event{StopCode: fleet.StopEssentialContainerExited, ExitCode: exit(137), ContainerReason: "OutOfMemoryError: Container killed due to memory usage"}, fleet.StopOOM, false, 1},
		{"spot", fleet.Event{StopCode: fleet.StopSpotInterruption, Reason: "Your Spot Task was interrupted."}, fleet.StopSpot, true, 0},
		{"termination notice", fleet.Event{StopCode: fleet.StopTerminationNotice}, fleet.StopSpot, true, 0},
		{"scale-in", fleet.Event{StopCode: fleet.StopUserInitiated, ExitCode: exit(143)}, fleet.StopScaleIn, false, 0},
		{"scheduler", fleet.Event{StopCode: fleet.StopServiceSchedulerInitiated, Reason: "Scaling activity initiated by deployment"}, fleet.StopScaleIn, false, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := setup(t)
			a := e.running("task/1", job.Submission{Type: "echo"})
			b := e.running("task/1", job.Submission{Type: "echo"})
			other := e.running("task/2", job.Submission{Type: "echo"})

			// The notice: told to stop, still running (no exit code yet).
			ev := tc.event
			ev.WorkerID, ev.LastStatus, ev.DesiredStatus, ev.Version = "task/1", fleet.StatusRunning, fleet.StatusStopped, 3
			stopped := ev
			ev.ExitCode = nil
			sendEvent(t, e.events, ev)
			want, status := 0, job.Running
			if tc.notice {
				want, status = 2, job.Queued
			}
			require.Equal(t, want, e.pollEvents(1))
			for _, j := range []*job.Job{a, b} {
				require.Equal(t, status, e.get(j.ID).Status)
			}
			require.Zero(t, testutil.CollectAndCount(e.m.FleetStops), "a notice is not a stop")

			stopped.LastStatus, stopped.Version = fleet.StatusStopped, 4
			sendEvent(t, e.events, stopped)
			sendEvent(t, e.events, stopped) // a duplicate
			require.Equal(t, 2-want, e.pollEvents(2), "the STOPPED event settles what the notice left")

			for _, j := range []*job.Job{a, b} {
				q := e.get(j.ID)
				require.Equal(t, job.Queued, q.Status, "reclaimed without waiting for the lease")
				require.Equal(t, tc.failures, q.Failures)
				require.Equal(t, 1, q.Attempt, "the next start makes attempt 2")
				last := q.History[len(q.History)-1]
				require.Equal(t, "task/1", last.Owner)
				require.Contains(t, last.Reason, "("+string(tc.class)+")")
				if tc.failures == 0 {
					require.Equal(t, job.OutcomeInterrupted, last.Outcome)
				} else {
					require.Equal(t, job.OutcomeTaskStopped, last.Outcome)
				}
			}
			require.Equal(t, job.Running, e.get(other.ID).Status)
			require.Len(t, e.messages(e.work), 2, "one message per job")
			require.Empty(t, e.messages(e.events), "events deleted once handled")
			require.Equal(t, 1, testutil.CollectAndCount(e.m.FleetStops), "one class counted")
			require.Equal(t, 1.0, testutil.ToFloat64(e.m.FleetStops.WithLabelValues(string(tc.class))), "the stop counted once")
			require.Equal(t, 1.0, testutil.ToFloat64(e.m.FleetTasks.WithLabelValues(fleet.StatusStopped)), "the view has the worker stopped")
		})
	}
}

// renewing is a job store driver that renews the leases of the jobs in the
// first batch of changes just before applying it, as their live owner's
// heartbeat would.
// meanwhile is a store driver that, on the first Apply, lets each changed
// job change first (as another writer would between the reaper's read and
// its write), through the underlying driver.
type meanwhile struct {
	jobstore.Driver
	t      *testing.T
	change func(cur *job.Job) []job.Change
	once   sync.Once
}

func (d *meanwhile) Apply(ctx context.Context, changes []job.Change) ([]jobstore.ChangeResult, error) {
	d.once.Do(func() {
		for _, c := range changes {
			cur, err := d.Driver.Get(ctx, c.ID)
			require.NoError(d.t, err)
			for _, ch := range d.change(cur) {
				res, err := d.Driver.Apply(ctx, []job.Change{ch})
				require.NoError(d.t, err)
				require.NoError(d.t, res[0].Err)
			}
		}
	})
	return d.Driver.Apply(ctx, changes)
}

// The worker of a Spot notice still renews its leases; a reclaim that loses
// to a renewal is tried again from the record as found.
func TestSpotNoticeReclaimsDespiteARenewal(t *testing.T) {
	t.Parallel()
	e := setup(t)
	j := e.running("task/4", job.Submission{Type: "echo"})
	renew := func(cur *job.Job) []job.Change { return []job.Change{policy.Renew(cur, t0, nil)} }
	r := reaper.New(jobstore.New(&meanwhile{Driver: e.store.Driver(), t: t, change: renew}, &jobstore.Options{Clock: e.clock}), e.work,
		&reaper.Options{Policy: policy, Clock: e.clock, Metrics: e.m})
	notice := fleet.Event{WorkerID: "task/4", LastStatus: fleet.StatusRunning, DesiredStatus: fleet.StatusStopped,
		StopCode: fleet.StopSpotInterruption, Reason: "Your Spot Task was interrupted.", Version: 2}
	n, err := r.HandleEvent(context.Background(), notice)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	q := e.get(j.ID)
	require.Equal(t, job.Queued, q.Status)
	require.Zero(t, q.Failures)
	require.Equal(t, []job.Message{{ID: j.ID, Attempt: 1}}, e.messages(e.work))

	// Its owner's next heartbeat finds the lease lost.
	res, err := e.store.Apply(context.Background(), policy.Renew(j, e.clock.Now(), nil))
	require.NoError(t, err)
	require.ErrorIs(t, res[0].Err, errcode.FailedPrecondition)
	// So does its hand-back when it drains.
	res, err = e.store.Apply(context.Background(), policy.Finish(j, e.clock.Now(), job.End{Outcome: job.OutcomeHandedBack}))
	require.NoError(t, err)
	require.ErrorIs(t, res[0].Err, errcode.FailedPrecondition)
	require.Equal(t, q.Rev, e.get(j.ID).Rev, "the interrupted worker changed nothing")
}

// A reclaim that loses because the job has moved on to another worker is
// not tried again: the retry is only for a renewal by the same owner.
func TestSpotNoticeLeavesAJobThatMovedOn(t *testing.T) {
	t.Parallel()
	e := setup(t)
	j := e.running("task/4", job.Submission{Type: "echo"})
	// Meanwhile the job is re-queued (by another reaper, say) and started
	// again by task/9.
	moveOn := func(cur *job.Job) []job.Change {
		return []job.Change{policy.Reclaim(cur, t0, job.End{Outcome: job.OutcomeInterrupted, Reason: "elsewhere"}),
			policy.Start(job.Message{ID: cur.ID, Attempt: cur.Attempt}, "task/9", t0)}
	}
	r := reaper.New(jobstore.New(&meanwhile{Driver: e.store.Driver(), t: t, change: moveOn}, &jobstore.Options{Clock: e.clock}), e.work,
		&reaper.Options{Policy: policy, Clock: e.clock, Metrics: e.m})
	notice := fleet.Event{WorkerID: "task/4", LastStatus: fleet.StatusRunning, DesiredStatus: fleet.StatusStopped,
		StopCode: fleet.StopSpotInterruption, Reason: "Your Spot Task was interrupted.", Version: 2}
	n, err := r.HandleEvent(context.Background(), notice)
	require.NoError(t, err)
	require.Zero(t, n)
	now := e.get(j.ID)
	require.Equal(t, job.Running, now.Status)
	require.Equal(t, "task/9", now.Owner)
	require.Equal(t, 2, now.Attempt, "task/9's attempt is left alone")
}

func TestMalformedEventDeadLettered(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctx := context.Background()
	_, err := e.events.Send(ctx, queue.SendEntry{Body: []byte(`{"detail-type":"Something Else","source":"aws.ecs","detail":{}}`)})
	require.NoError(t, err)
	res, err := e.r.PollEvents(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, res.Malformed)
	msgs, err := e.evDLQ.Receive(ctx, queue.ReceiveOptions{Max: 1})
	require.NoError(t, err)
	require.Len(t, msgs, 1)
	require.Contains(t, msgs[0].Attributes["reason"], "detail-type")
}

// Two reapers sweeping at once reclaim each job once and send one message
// per job.
func TestTwoReapersAtOnce(t *testing.T) {
	t.Parallel()
	e := setup(t)
	var ids []string
	for range 20 {
		ids = append(ids, e.running("dead", job.Submission{Type: "echo"}).ID)
	}
	e.clock.Advance(policy.Lease + time.Second)
	r2 := e.newReaper()
	var wg sync.WaitGroup
	results := make([]reaper.SweepResult, 2)
	for i, r := range []*reaper.Reaper{e.r, r2} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := r.Sweep(context.Background())
			require.NoError(t, err)
			results[i] = res
		}()
	}
	wg.Wait()
	require.Equal(t, 20, results[0].Reclaimed+results[1].Reclaimed)
	msgs := e.messages(e.work)
	require.Len(t, msgs, 20)
	seen := map[string]bool{}
	for _, m := range msgs {
		require.False(t, seen[m.ID], "two messages for %s", m.ID)
		seen[m.ID] = true
	}
	for _, id := range ids {
		require.Equal(t, 1, e.get(id).Failures)
	}
}

func TestPurgeExpired(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctx := context.Background()
	j := e.submit(job.Submission{Type: "echo"})
	c, _ := policy.RequestCancel(j, e.clock.Now())
	_, err := e.store.ApplyOne(ctx, c)
	require.NoError(t, err)
	e.clock.Advance(policy.Retention + time.Hour)
	require.Equal(t, 1, e.sweep().Purged)
	_, err = e.store.Driver().Get(ctx, j.ID)
	require.Error(t, err, "deleted, not only hidden")
}

func TestLoopsRunAndStop(t *testing.T) {
	t.Parallel()
	e := setup(t)
	j := e.running("task/9", job.Submission{Type: "echo"})
	require.NoError(t, e.r.Start(context.Background()))
	sendEvent(t, e.events, fleet.Event{WorkerID: "task/9", LastStatus: fleet.StatusStopped, DesiredStatus: fleet.StatusStopped, ExitCode: exit(1)})
	require.Eventually(t, func() bool { return e.get(j.ID).Status == job.Queued }, 10*time.Second, 5*time.Millisecond)
	e.r.Stop()
	e.r.Stop()
	require.Error(t, e.r.Start(context.Background()), "no restart after Stop")
}

func TestFleetViewFromEvents(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctx := context.Background()
	created := t0.Add(-3 * time.Second)
	running := fleet.Event{WorkerID: "task/5", LastStatus: fleet.StatusRunning, DesiredStatus: fleet.StatusRunning,
		CreatedAt: created, StartedAt: t0, Version: 2}
	_, err := e.r.HandleEvent(ctx, fleet.Event{WorkerID: "task/5", LastStatus: fleet.StatusPending, DesiredStatus: fleet.StatusRunning, CreatedAt: created, Version: 1})
	require.NoError(t, err)
	_, err = e.r.HandleEvent(ctx, running)
	require.NoError(t, err)
	_, err = e.r.HandleEvent(ctx, running) // duplicate
	require.NoError(t, err)
	require.Equal(t, 1.0, testutil.ToFloat64(e.m.FleetTasks.WithLabelValues(fleet.StatusRunning)))
	var h dto.Metric
	require.NoError(t, e.m.TaskStart.Write(&h))
	require.Equal(t, uint64(1), h.GetHistogram().GetSampleCount(), "one start, duplicates not counted")
	require.Equal(t, 3.0, h.GetHistogram().GetSampleSum(), "created → running")

	stopped := running
	stopped.LastStatus, stopped.DesiredStatus, stopped.Version = fleet.StatusStopped, fleet.StatusStopped, 3
	_, err = e.r.HandleEvent(ctx, stopped)
	require.NoError(t, err)
	_, err = e.r.HandleEvent(ctx, running) // late, older: ignored
	require.NoError(t, err)
	require.Equal(t, 0.0, testutil.ToFloat64(e.m.FleetTasks.WithLabelValues(fleet.StatusRunning)))
	require.Equal(t, 1.0, testutil.ToFloat64(e.m.FleetTasks.WithLabelValues(fleet.StatusStopped)))
}

// A job that never started within start_within fails with a provisioner
// error naming why it waited.
func TestStartDeadline(t *testing.T) {
	t.Parallel()
	e := setup(t)
	j := e.submit(job.Submission{Type: "echo", StartWithin: job.Duration(10 * time.Second)})
	require.Equal(t, t0.Add(10*time.Second), j.StartBy)
	require.Equal(t, j.StartBy, j.DueAt, "due at the start deadline, before the resend deadline")
	_, err := e.store.ApplyOne(context.Background(), policy.Note(j, e.clock.Now(), "waiting for capacity: RESOURCE:ENI"))
	require.NoError(t, err)
	e.clock.Advance(9 * time.Second)
	require.Zero(t, e.sweep().Expired)
	e.clock.Advance(time.Second + time.Millisecond)
	require.Equal(t, 1, e.sweep().Expired)
	f := e.get(j.ID)
	require.Equal(t, job.Failed, f.Status)
	require.Equal(t, "provisioner: not started within 10s of run_at (waiting for capacity: RESOURCE:ENI)", f.Error)

	// Once started, the deadline no longer applies.
	k := e.submit(job.Submission{Type: "echo", StartWithin: job.Duration(10 * time.Second)})
	r, err := e.store.ApplyOne(context.Background(), policy.Start(job.Message{ID: k.ID}, "w", e.clock.Now()))
	require.NoError(t, err)
	_, err = e.store.ApplyOne(context.Background(), policy.Finish(r, e.clock.Now(), job.End{Outcome: job.OutcomeHandedBack}))
	require.NoError(t, err)
	e.clock.Advance(time.Hour)
	res := e.sweep()
	require.Zero(t, res.Expired)
	require.Equal(t, 1, res.Resent)
}

// A dead worker's long poll may still be open at SQS and swallow the first
// message of its re-queued job; a second one follows after that window.
func TestOrphanPollGuard(t *testing.T) {
	t.Parallel()
	e := setup(t)
	r := reaper.New(e.store, e.work, &reaper.Options{Policy: policy, Clock: e.clock, Metrics: e.m, OrphanPoll: 2 * time.Second})
	j := e.running("task/7", job.Submission{Type: "echo"})
	n, err := r.HandleEvent(context.Background(), fleet.Event{WorkerID: "task/7", LastStatus: fleet.StatusStopped, DesiredStatus: fleet.StatusStopped, ExitCode: exit(137), Version: 1})
	require.NoError(t, err)
	require.Equal(t, 1, n)
	d, err := e.work.Depth(context.Background())
	require.NoError(t, err)
	require.Equal(t, queue.Depth{Visible: 1, Delayed: 1}, d)
	require.Equal(t, []job.Message{{ID: j.ID, Attempt: 1}}, e.messages(e.work))
	e.clock.Advance(2 * time.Second)
	require.Equal(t, []job.Message{{ID: j.ID, Attempt: 1}}, e.messages(e.work), "the guard copy (stale if the first started the job)")
}

// failing is a job store driver that fails the changes of one job (entry
// by entry) or, when down, every call.
type failing struct {
	jobstore.Driver
	mu   sync.Mutex
	id   string
	down bool
}

func (f *failing) set(id string, down bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.id, f.down = id, down
}

func (f *failing) Owned(ctx context.Context, owner string, limit int) ([]*job.Job, error) {
	f.mu.Lock()
	down := f.down
	f.mu.Unlock()
	if down {
		return nil, errcode.New(errcode.Unavailable, "store down")
	}
	return f.Driver.Owned(ctx, owner, limit)
}

func (f *failing) Apply(ctx context.Context, changes []job.Change) ([]jobstore.ChangeResult, error) {
	f.mu.Lock()
	id := f.id
	f.mu.Unlock()
	var pass []job.Change
	var idx []int
	out := make([]jobstore.ChangeResult, len(changes))
	for i, c := range changes {
		if c.ID == id {
			out[i].Err = errcode.New(errcode.Unavailable, "entry refused")
			continue
		}
		pass = append(pass, c)
		idx = append(idx, i)
	}
	if len(pass) > 0 {
		res, err := f.Driver.Apply(ctx, pass)
		if err != nil {
			return nil, err
		}
		for k, r := range res {
			out[idx[k]] = r
		}
	}
	return out, nil
}

func (e *env) failingReaper(f *failing) *reaper.Reaper {
	return reaper.New(jobstore.New(f, &jobstore.Options{Clock: e.clock}), e.work, &reaper.Options{
		Policy: policy, Sweep: time.Hour, WorkDLQ: e.dlq, Events: e.events, EventsDLQ: e.evDLQ,
		EventsWait: 50 * time.Millisecond, Clock: e.clock, Metrics: e.m,
	})
}

// One entry failing in a sweep does not hold back the messages of the jobs
// the same sweep re-queued.
func TestSweepSendsWinnersDespiteAFailingEntry(t *testing.T) {
	t.Parallel()
	e := setup(t)
	a := e.running("dead", job.Submission{Type: "echo"})
	b := e.running("dead", job.Submission{Type: "echo"})
	f := &failing{Driver: e.store.Driver()}
	f.set(a.ID, false)
	r := e.failingReaper(f)
	e.clock.Advance(policy.Lease + time.Second)
	res, err := r.Sweep(context.Background())
	require.ErrorIs(t, err, errcode.Unavailable)
	require.Equal(t, 1, res.Reclaimed)
	require.Equal(t, []job.Message{{ID: b.ID, Attempt: 1}}, e.messages(e.work), "b's message went out")
}

// A fleet event whose handling failed is handled when it comes back, not
// taken for a duplicate.
func TestFailedEventHandledOnRetry(t *testing.T) {
	t.Parallel()
	e := setup(t)
	j := e.running("task/3", job.Submission{Type: "echo", MaxAttempts: 1})
	f := &failing{Driver: e.store.Driver()}
	f.set("", true)
	r := e.failingReaper(f)
	ev := fleet.Event{WorkerID: "task/3", LastStatus: fleet.StatusStopped, DesiredStatus: fleet.StatusStopped, StopCode: fleet.StopSpotInterruption, Version: 5}
	_, err := r.HandleEvent(context.Background(), ev)
	require.ErrorIs(t, err, errcode.Unavailable)
	f.set("", false)
	n, err := r.HandleEvent(context.Background(), ev)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	q := e.get(j.ID)
	require.Equal(t, job.Queued, q.Status, "re-queued, not left to its lease")
	require.Equal(t, 0, q.Failures, "a Spot interruption spends no attempt")
}

// A job asked to cancel while it ran, then re-queued before its owner saw
// the request (its attempt failed and is retried), is cancelled by the
// sweep.
func TestSweepCancelsRequeuedJobWithPendingCancel(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctx := context.Background()
	j := e.running("w", job.Submission{Type: "echo"})
	c, _ := policy.RequestCancel(j, e.clock.Now())
	_, err := e.store.ApplyOne(ctx, c)
	require.NoError(t, err)
	// The owner's copy predates the request: its failure re-queues the job.
	q, err := e.store.ApplyOne(ctx, policy.Finish(j, e.clock.Now(), job.End{Outcome: job.OutcomeFailed, Reason: "boom"}))
	require.NoError(t, err)
	require.Equal(t, job.Queued, q.Status)
	require.True(t, q.CancelRequested)
	e.clock.Advance(policy.ResendAfter + time.Second)
	e.sweep()
	require.Equal(t, job.Cancelled, e.get(j.ID).Status)
}
