package worker_test

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/jobfleet/jobfleet/pkg/blob"
	"github.com/jobfleet/jobfleet/pkg/blob/fileblob"
	"github.com/jobfleet/jobfleet/pkg/clock"
	"github.com/jobfleet/jobfleet/pkg/errcode"
	"github.com/jobfleet/jobfleet/pkg/job"
	"github.com/jobfleet/jobfleet/pkg/jobstore"
	"github.com/jobfleet/jobfleet/pkg/jobstore/faultjobstore"
	"github.com/jobfleet/jobfleet/pkg/jobstore/sqlitejobstore"
	"github.com/jobfleet/jobfleet/pkg/metrics"
	"github.com/jobfleet/jobfleet/pkg/queue"
	"github.com/jobfleet/jobfleet/pkg/queue/sqlitequeue"
	"github.com/jobfleet/jobfleet/pkg/reaper"
	"github.com/jobfleet/jobfleet/pkg/work"
	"github.com/jobfleet/jobfleet/pkg/worker"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var t0 = time.Date(2030, 5, 6, 7, 8, 9, 0, time.UTC)

// Tests run the worker on the real local adapters with a fake clock: leases
// and visibility never run out by themselves, and heartbeats are triggered
// by hand (the worker's own ticker is set to an hour).
var policy = func() job.Policy {
	p := job.DefaultPolicy
	p.Lease = 3 * time.Hour
	return p
}()

type env struct {
	t     *testing.T
	clock *clock.Fake
	store *jobstore.Store
	work  *queue.Queue
	dlq   *queue.Queue
	blob  *blob.Bucket
	reg   *worker.Registry
	m     *metrics.Metrics
}

func setup(t *testing.T) *env {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	e := &env{t: t, clock: clock.NewFake(t0), reg: worker.NewRegistry(), m: metrics.New()}
	var err error
	e.store, err = sqlitejobstore.Open(ctx, filepath.Join(dir, "jobs.db"), &sqlitejobstore.Options{Clock: e.clock})
	require.NoError(t, err)
	t.Cleanup(func() { e.store.Close() })
	qdb, err := sqlitequeue.OpenDB(ctx, filepath.Join(dir, "queue.db"), &sqlitequeue.Options{Clock: e.clock})
	require.NoError(t, err)
	t.Cleanup(func() { qdb.Close() })
	require.NoError(t, qdb.CreateQueue(ctx, "work-dlq", sqlitequeue.Config{}))
	require.NoError(t, qdb.CreateQueue(ctx, "work", sqlitequeue.Config{Visibility: time.Hour, DeadLetter: "work-dlq", MaxReceives: 10}))
	e.work, err = qdb.Open(ctx, "work")
	require.NoError(t, err)
	e.dlq, err = qdb.Open(ctx, "work-dlq")
	require.NoError(t, err)
	e.blob, err = fileblob.Open(filepath.Join(dir, "blobs"), nil)
	require.NoError(t, err)
	t.Cleanup(func() { e.blob.Close() })
	return e
}

func (e *env) options() *worker.Options {
	return &worker.Options{
		DLQ:          e.dlq,
		Policy:       policy,
		Concurrency:  4,
		Heartbeat:    time.Hour,
		Visibility:   4 * time.Hour,
		ReceiveWait:  time.Second,
		DrainTimeout: 5 * time.Second,
		AbandonAfter: time.Second,
		InlineLimit:  64,
		RetryBase:    time.Second,
		RetryMax:     time.Second,
		Clock:        e.clock,
		Metrics:      e.m,
	}
}

func (e *env) start(id string, opts *worker.Options) *worker.Worker {
	e.t.Helper()
	if opts == nil {
		opts = e.options()
	}
	w, err := worker.New(id, e.store, e.work, e.blob, e.reg, opts)
	require.NoError(e.t, err)
	require.NoError(e.t, w.Start(context.Background()))
	e.t.Cleanup(w.Stop)
	return w
}

func (e *env) submit(sub job.Submission) *job.Job {
	e.t.Helper()
	ctx := context.Background()
	now := e.clock.Now()
	require.NoError(e.t, sub.Validate(job.DefaultLimits, now))
	j := policy.New(&sub, job.DefaultLimits, job.NewID(now), now)
	res, err := e.store.Create(ctx, j)
	require.NoError(e.t, err)
	require.NoError(e.t, res[0].Err)
	errs, err := work.Enqueue(ctx, e.work, now, j)
	require.NoError(e.t, err)
	require.NoError(e.t, errs[0])
	return j
}

func (e *env) get(id string) *job.Job {
	e.t.Helper()
	j, err := e.store.Get(context.Background(), id)
	require.NoError(e.t, err)
	return j
}

// waitStatus waits until the job reaches status.
func (e *env) waitStatus(id string, status job.Status) *job.Job {
	e.t.Helper()
	var j *job.Job
	require.Eventually(e.t, func() bool {
		j = e.get(id)
		return j.Status == status
	}, 15*time.Second, 5*time.Millisecond, "job %s never reached %s", id, status)
	return j
}

func (e *env) depth() queue.Depth {
	e.t.Helper()
	d, err := e.work.Depth(context.Background())
	require.NoError(e.t, err)
	return d
}

// waitDrained waits until the work queue holds nothing at all.
func (e *env) waitDrained() {
	e.t.Helper()
	require.Eventually(e.t, func() bool { return e.depth() == queue.Depth{} }, 10*time.Second, 5*time.Millisecond, "work queue not drained: %+v", e.depth())
}

// blocker is a handler that runs until released or its context ends.
type blocker struct {
	started chan string
	release chan struct{}
	result  json.RawMessage
	ignore  bool // ignore ctx (a misbehaving handler)
}

func newBlocker() *blocker {
	return &blocker{started: make(chan string, 100), release: make(chan struct{}), result: json.RawMessage(`"done"`)}
}

func (b *blocker) Handle(ctx context.Context, j *worker.Job) (json.RawMessage, error) {
	b.started <- j.ID
	if b.ignore {
		<-b.release
		return b.result, nil
	}
	select {
	case <-b.release:
		return b.result, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func TestSuccess(t *testing.T) {
	t.Parallel()
	e := setup(t)
	worker.Register(e.reg, "greet", func(_ context.Context, j *worker.Job, p struct{ Name string }) (string, error) {
		_, _ = j.Log.Write([]byte("greeting " + p.Name + "\n"))
		return "hello " + p.Name, nil
	})
	j := e.submit(job.Submission{Type: "greet", Payload: json.RawMessage(`{"Name":"ada"}`)})
	w := e.start("w1", nil)
	done := e.waitStatus(j.ID, job.Succeeded)
	require.JSONEq(t, `"hello ada"`, string(done.Result))
	require.Equal(t, 1, done.Attempt)
	require.Equal(t, 0, done.Failures)
	require.Len(t, done.History, 1)
	require.Equal(t, "w1", done.History[0].Owner)
	require.Equal(t, job.OutcomeSucceeded, done.History[0].Outcome)
	e.waitDrained()

	logs, err := e.blob.ReadAll(context.Background(), worker.LogKey(j.ID, 1))
	require.NoError(t, err)
	require.Equal(t, "greeting ada\n", string(logs))
	// The counters move after the commit, before the run is untracked.
	require.Eventually(t, func() bool { return w.Running() == 0 }, 10*time.Second, 5*time.Millisecond)
	require.Equal(t, 1.0, testutil.ToFloat64(e.m.Finished.WithLabelValues("greet", "succeeded")))
	require.Equal(t, 1.0, testutil.ToFloat64(e.m.Started.WithLabelValues("greet")))
}

func TestLargeResultGoesToBlobStore(t *testing.T) {
	t.Parallel()
	e := setup(t)
	big := strings.Repeat("x", 1000)
	worker.Register(e.reg, "big", func(context.Context, *worker.Job, any) (string, error) { return big, nil })
	j := e.submit(job.Submission{Type: "big"})
	e.start("w1", nil)
	done := e.waitStatus(j.ID, job.Succeeded)
	require.Nil(t, done.Result)
	require.Equal(t, worker.ResultKey(j.ID, 1), done.ResultRef)
	b, err := e.blob.ReadAll(context.Background(), done.ResultRef)
	require.NoError(t, err)
	require.Equal(t, `"`+big+`"`, string(b))
}

func TestPayloadFromBlobStore(t *testing.T) {
	t.Parallel()
	e := setup(t)
	_, err := e.blob.PutBytes(context.Background(), "payloads/p1.json", []byte(`{"n":7}`), "application/json")
	require.NoError(t, err)
	worker.Register(e.reg, "double", func(_ context.Context, _ *worker.Job, p struct{ N int }) (int, error) { return 2 * p.N, nil })
	j := e.submit(job.Submission{Type: "double", PayloadRef: "payloads/p1.json"})
	e.start("w1", nil)
	require.JSONEq(t, `14`, string(e.waitStatus(j.ID, job.Succeeded).Result))
}

func TestRetryThenSucceed(t *testing.T) {
	t.Parallel()
	e := setup(t)
	var calls atomic.Int32
	worker.Register(e.reg, "flaky", func(context.Context, *worker.Job, any) (int32, error) {
		if n := calls.Add(1); n < 3 {
			return 0, errors.New("transient")
		}
		return calls.Load(), nil
	})
	j := e.submit(job.Submission{Type: "flaky", MaxAttempts: 5})
	e.start("w1", nil)
	for want := 1; want <= 2; want++ {
		// Each retry waits out its backoff as a message delay on the clock.
		require.Eventually(t, func() bool { return e.get(j.ID).Failures == want }, 10*time.Second, 5*time.Millisecond)
		q := e.waitStatus(j.ID, job.Queued)
		require.Contains(t, q.Error, "transient")
		// The retry waits as a delayed message (sent just after the write).
		require.Eventually(t, func() bool { return e.depth().Delayed == 1 }, 10*time.Second, 5*time.Millisecond)
		e.clock.Advance(2 * time.Second)
	}
	done := e.waitStatus(j.ID, job.Succeeded)
	require.Equal(t, 3, done.Attempt)
	require.Equal(t, 2, done.Failures)
	require.Equal(t, []job.Outcome{job.OutcomeFailed, job.OutcomeFailed, job.OutcomeSucceeded},
		[]job.Outcome{done.History[0].Outcome, done.History[1].Outcome, done.History[2].Outcome})
	e.waitDrained()
}

func TestPermanentPanicAndExhaustion(t *testing.T) {
	t.Parallel()
	e := setup(t)
	worker.Register(e.reg, "perm", func(context.Context, *worker.Job, any) (any, error) {
		return nil, worker.Permanent(errors.New("bad input"))
	})
	worker.Register(e.reg, "boom", func(context.Context, *worker.Job, any) (any, error) { panic("kaboom") })
	worker.Register(e.reg, "strict", func(context.Context, *worker.Job, struct{ N int }) (any, error) { return nil, nil })
	perm := e.submit(job.Submission{Type: "perm", MaxAttempts: 5})
	boom := e.submit(job.Submission{Type: "boom", MaxAttempts: 1})
	strict := e.submit(job.Submission{Type: "strict", Payload: json.RawMessage(`{"N":"x"}`)})
	unknown := e.submit(job.Submission{Type: "nobody", MaxAttempts: 1})
	e.start("w1", nil)

	p := e.waitStatus(perm.ID, job.Failed)
	require.Equal(t, "bad input", p.Error)
	require.Equal(t, 1, p.Attempt)

	b := e.waitStatus(boom.ID, job.Failed)
	require.Contains(t, b.Error, "panic: kaboom")
	require.Contains(t, b.History[0].Reason, "panic: kaboom")
	require.Equal(t, job.OutcomePanic, b.History[0].Outcome)

	s := e.waitStatus(strict.ID, job.Failed)
	require.Contains(t, s.Error, "payload for strict")

	u := e.waitStatus(unknown.ID, job.Failed)
	require.Contains(t, u.Error, `no handler for type "nobody"`)
}

func TestSnoozeSpendsNoAttempt(t *testing.T) {
	t.Parallel()
	e := setup(t)
	var calls atomic.Int32
	worker.Register(e.reg, "later", func(context.Context, *worker.Job, any) (string, error) {
		if calls.Add(1) == 1 {
			return "", worker.Snooze(30 * time.Second)
		}
		return "ok", nil
	})
	j := e.submit(job.Submission{Type: "later", MaxAttempts: 1})
	e.start("w1", nil)
	require.Eventually(t, func() bool { return e.get(j.ID).Attempt == 1 && e.get(j.ID).Status == job.Queued }, 10*time.Second, 5*time.Millisecond)
	q := e.get(j.ID)
	require.Equal(t, 0, q.Failures)
	require.Equal(t, t0.Add(30*time.Second), q.RunAt)
	// The next message waits as a delayed message (sent just after the
	// write): advance only once it is sent, or its delay counts from later.
	require.Eventually(t, func() bool { return e.depth().Delayed == 1 }, 10*time.Second, 5*time.Millisecond)
	e.clock.Advance(31 * time.Second)
	done := e.waitStatus(j.ID, job.Succeeded)
	require.Equal(t, 2, done.Attempt)
	require.Equal(t, job.OutcomeSnoozed, done.History[0].Outcome)
}

func TestTimeout(t *testing.T) {
	t.Parallel()
	e := setup(t)
	b := newBlocker()
	e.reg.Handle("block", b)
	j := e.submit(job.Submission{Type: "block", Timeout: job.Duration(time.Second), MaxAttempts: 1})
	e.start("w1", nil)
	f := e.waitStatus(j.ID, job.Failed)
	require.Equal(t, job.OutcomeTimeout, f.History[0].Outcome)
	require.Contains(t, f.Error, "ran past its timeout of 1s")
}

func TestCancelRequestSeenAtHeartbeat(t *testing.T) {
	t.Parallel()
	e := setup(t)
	b := newBlocker()
	e.reg.Handle("block", b)
	j := e.submit(job.Submission{Type: "block"})
	w := e.start("w1", nil)
	<-b.started
	cur := e.get(j.ID)
	c, ok := policy.RequestCancel(cur, e.clock.Now())
	require.True(t, ok)
	_, err := e.store.ApplyOne(context.Background(), c)
	require.NoError(t, err)
	w.HeartbeatNow(context.Background())
	done := e.waitStatus(j.ID, job.Cancelled)
	require.Equal(t, job.OutcomeCancelled, done.History[0].Outcome)
	require.Equal(t, 0, done.Failures)
	e.waitDrained()
}

func TestProgressWrittenByHeartbeat(t *testing.T) {
	t.Parallel()
	e := setup(t)
	reported := make(chan struct{})
	release := make(chan struct{})
	e.reg.Handle("prog", worker.HandlerFunc(func(ctx context.Context, j *worker.Job) (json.RawMessage, error) {
		require.NoError(t, j.Progress(map[string]int{"done": 3, "total": 10}))
		require.Error(t, j.Progress(strings.Repeat("x", worker.MaxProgress)))
		close(reported)
		<-release
		return nil, nil
	}))
	j := e.submit(job.Submission{Type: "prog"})
	w := e.start("w1", nil)
	<-reported
	e.clock.Advance(time.Minute)
	w.HeartbeatNow(context.Background())
	r := e.get(j.ID)
	require.JSONEq(t, `{"done":3,"total":10}`, string(r.Progress))
	require.Equal(t, t0.Add(time.Minute+policy.Lease), r.LeaseUntil, "the heartbeat renewed the lease")
	close(release)
	e.waitStatus(j.ID, job.Succeeded)
}

// A worker that lost its lease (another took the job over) commits nothing.
func TestLeaseLostCommitsNothing(t *testing.T) {
	t.Parallel()
	e := setup(t)
	b := newBlocker()
	b.ignore = true // keeps running after its context ends, then "succeeds"
	e.reg.Handle("block", b)
	j := e.submit(job.Submission{Type: "block"})
	opts := e.options()
	opts.AbandonAfter = time.Hour // wait for the handler
	w := e.start("w1", opts)
	<-b.started

	// The lease runs out; a second worker takes the job over.
	e.clock.Advance(policy.Lease + time.Second)
	cur := e.get(j.ID)
	taken, err := e.store.ApplyOne(context.Background(), policy.Takeover(cur, "w2", e.clock.Now()))
	require.NoError(t, err)
	w.HeartbeatNow(context.Background())
	close(b.release)
	require.Eventually(t, func() bool { return w.Running() == 0 }, 10*time.Second, 5*time.Millisecond)
	after := e.get(j.ID)
	require.Equal(t, job.Running, after.Status, "the stale owner's success was not written")
	require.Equal(t, "w2", after.Owner)
	require.Equal(t, taken.Rev, after.Rev)
	require.Equal(t, 1.0, testutil.ToFloat64(e.m.LeasesLost.WithLabelValues("block")))
}

// A redelivered message for a job whose owner died takes it over.
func TestTakeoverOfExpiredLease(t *testing.T) {
	t.Parallel()
	e := setup(t)
	e.reg.Handle("echo", worker.HandlerFunc(func(_ context.Context, j *worker.Job) (json.RawMessage, error) { return j.Payload, nil }))
	j := e.submit(job.Submission{Type: "echo", Payload: json.RawMessage(`1`)})
	ctx := context.Background()
	// A worker "w0" receives and starts it, then dies.
	msgs, err := e.work.Receive(ctx, queue.ReceiveOptions{Max: 1, Visibility: time.Minute})
	require.NoError(t, err)
	require.Len(t, msgs, 1)
	_, err = e.store.ApplyOne(ctx, policy.Start(job.Message{ID: j.ID}, "w0", e.clock.Now()))
	require.NoError(t, err)
	// Its lease and the message's visibility run out.
	e.clock.Advance(policy.Lease + time.Minute)
	e.start("w1", nil)
	done := e.waitStatus(j.ID, job.Succeeded)
	require.Equal(t, 2, done.Attempt)
	require.Equal(t, 1, done.Failures)
	require.Equal(t, job.OutcomeLeaseExpired, done.History[0].Outcome)
	require.Equal(t, "w1", done.History[1].Owner)
	e.waitDrained()
}

// Messages that cannot start their job are deleted: a terminal job, a job at
// a newer attempt, a missing job.
func TestStaleMessagesDeleted(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctx := context.Background()
	e.reg.Handle("echo", worker.HandlerFunc(func(_ context.Context, j *worker.Job) (json.RawMessage, error) { return j.Payload, nil }))
	j := e.submit(job.Submission{Type: "echo"})
	w := e.start("w1", nil)
	e.waitStatus(j.ID, job.Succeeded)
	e.waitDrained()
	// A crash after the finish write and before the delete leaves the
	// message; so does a duplicate delivery.
	_, err := work.Enqueue(ctx, e.work, e.clock.Now(), j)
	require.NoError(t, err)
	// A message for a job that does not exist.
	ghost := &job.Job{ID: job.NewID(t0)}
	_, err = work.Enqueue(ctx, e.work, e.clock.Now(), ghost)
	require.NoError(t, err)
	e.waitDrained()
	require.Equal(t, 2.0, testutil.ToFloat64(e.m.Stale))
	require.Equal(t, 1, e.get(j.ID).Attempt, "nothing ran twice")
	_ = w
}

func TestUndecodableMessageDeadLettered(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctx := context.Background()
	res, err := e.work.Send(ctx, queue.SendEntry{Body: []byte(`{"id":"nope"}`)})
	require.NoError(t, err)
	require.NoError(t, res[0].Err)
	e.start("w1", nil)
	var got []*queue.Message
	require.Eventually(t, func() bool {
		got, err = e.dlq.Receive(ctx, queue.ReceiveOptions{Max: 1})
		require.NoError(t, err)
		return len(got) == 1
	}, 10*time.Second, 5*time.Millisecond)
	require.Equal(t, `{"id":"nope"}`, string(got[0].Body))
	require.Contains(t, got[0].Attributes["reason"], "invalid job id")
	e.waitDrained()
}

// Stop lets running jobs finish within the drain budget, and hands back
// the rest at once, spending no attempt.
func TestDrainHandsBack(t *testing.T) {
	t.Parallel()
	e := setup(t)
	b := newBlocker()
	e.reg.Handle("block", b)
	quick := make(chan struct{})
	e.reg.Handle("quick", worker.HandlerFunc(func(ctx context.Context, j *worker.Job) (json.RawMessage, error) {
		<-quick
		return json.RawMessage(`"quick"`), nil
	}))
	slow := e.submit(job.Submission{Type: "block", MaxAttempts: 1})
	fast := e.submit(job.Submission{Type: "quick"})
	opts := e.options()
	opts.DrainTimeout = 300 * time.Millisecond
	w := e.start("w1", opts)
	<-b.started
	require.Eventually(t, func() bool { return w.Running() == 2 }, 10*time.Second, 5*time.Millisecond)

	stopped := make(chan struct{})
	go func() { w.Stop(); close(stopped) }()
	require.Eventually(t, func() bool { return !w.Healthy() }, time.Second, time.Millisecond)
	close(quick) // finishes within the budget
	<-stopped

	require.Equal(t, job.Succeeded, e.get(fast.ID).Status)
	h := e.get(slow.ID)
	require.Equal(t, job.Queued, h.Status, "handed back")
	require.Equal(t, 0, h.Failures, "a hand-back spends no attempt")
	require.Equal(t, job.OutcomeHandedBack, h.History[0].Outcome)
	require.Equal(t, int64(1), e.depth().Visible, "its next message is ready at once")

	// Another worker picks it up.
	close(b.release)
	e.start("w2", nil)
	done := e.waitStatus(slow.ID, job.Succeeded)
	require.Equal(t, 2, done.Attempt)
}

// A handler that ignores its context is abandoned after AbandonAfter; the
// hand-back is still written.
func TestDrainAbandonsStuckHandler(t *testing.T) {
	t.Parallel()
	e := setup(t)
	b := newBlocker()
	b.ignore = true
	e.reg.Handle("block", b)
	j := e.submit(job.Submission{Type: "block"})
	opts := e.options()
	opts.DrainTimeout = 50 * time.Millisecond
	opts.AbandonAfter = 50 * time.Millisecond
	w := e.start("w1", opts)
	<-b.started
	w.Stop()
	require.Equal(t, job.Queued, e.get(j.ID).Status)
	close(b.release) // let the abandoned goroutine end (goleak)
}

func TestConcurrencyLimit(t *testing.T) {
	t.Parallel()
	e := setup(t)
	var mu sync.Mutex
	running, peak := 0, 0
	gate := make(chan struct{})
	e.reg.Handle("gate", worker.HandlerFunc(func(ctx context.Context, j *worker.Job) (json.RawMessage, error) {
		mu.Lock()
		running++
		peak = max(peak, running)
		mu.Unlock()
		<-gate
		mu.Lock()
		running--
		mu.Unlock()
		return nil, nil
	}))
	var ids []string
	for range 7 {
		ids = append(ids, e.submit(job.Submission{Type: "gate"}).ID)
	}
	opts := e.options()
	opts.Concurrency = 3
	w := e.start("w1", opts)
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return running == 3
	}, 10*time.Second, 5*time.Millisecond)
	require.Equal(t, 3, w.Running())
	require.Equal(t, int64(4), e.depth().Visible, "only as many received as can run")
	close(gate)
	for _, id := range ids {
		e.waitStatus(id, job.Succeeded)
	}
	require.Equal(t, 3, peak)
}

func TestIdleTimeout(t *testing.T) {
	t.Parallel()
	e := setup(t)
	opts := e.options()
	opts.IdleTimeout = time.Minute
	w := e.start("w1", opts)
	select {
	case <-w.Done():
		t.Fatal("idle before the timeout")
	default:
	}
	e.clock.Advance(2 * time.Minute)
	select {
	case <-w.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("never went idle")
	}
}

func TestFreeMemoryWhenIdle(t *testing.T) {
	t.Parallel()
	e := setup(t)
	e.reg.Handle("echo", worker.HandlerFunc(func(_ context.Context, j *worker.Job) (json.RawMessage, error) { return j.Payload, nil }))
	opts := e.options()
	opts.FreeMemoryWhenIdle = true
	w, err := worker.New("w1", e.store, e.work, e.blob, e.reg, opts)
	require.NoError(t, err)
	var frees, checks atomic.Int32
	w.OnFreeMemory(func() { frees.Add(1) })
	w.OnIdleCheck(10*time.Millisecond, func() { checks.Add(1) })
	require.NoError(t, w.Start(context.Background()))
	t.Cleanup(w.Stop)

	// Once per idle spell: a job ends one, the idle time after it starts
	// the next.
	for spell := int32(1); spell <= 2; spell++ {
		j := e.submit(job.Submission{Type: "echo", Payload: json.RawMessage(`{}`)})
		e.waitStatus(j.ID, job.Succeeded)
		// The job's end touches the idle clock just after its outcome is
		// written: advance until the idle time after it is seen.
		require.Eventually(t, func() bool {
			e.clock.Advance(2 * time.Second)
			return frees.Load() == spell
		}, 10*time.Second, 50*time.Millisecond)
		// More idle checks within the same spell free nothing more.
		seen := checks.Load()
		require.Eventually(t, func() bool { return checks.Load() >= seen+5 }, 10*time.Second, time.Millisecond)
		require.Equal(t, spell, frees.Load())
	}
	select {
	case <-w.Done():
		t.Fatal("no idle timeout was set")
	default:
	}
}

func TestNewValidates(t *testing.T) {
	t.Parallel()
	e := setup(t)
	_, err := worker.New("", e.store, e.work, e.blob, e.reg, nil)
	require.True(t, errors.Is(err, errcode.InvalidArgument))
	opts := e.options()
	opts.Visibility = time.Second
	_, err = worker.New("w", e.store, e.work, e.blob, e.reg, opts)
	require.ErrorContains(t, err, "shorter than the lease")
	w, err := worker.New("w", e.store, e.work, e.blob, e.reg, nil)
	require.NoError(t, err)
	w.Stop() // before Start: fine
	w.Stop()
}

// A job re-queued while its handler still runs (its lease ran out under a
// busy handler, and the reaper re-queued it) may start again on the same
// worker. Each run stays tracked until its own handler returns: the old
// run's return must not drop the new one, which is still heartbeated.
// (Regression: the running map was keyed by job id, so the old run's
// return deleted the new run's entry and its lease ran out under it.)
func TestRerunOnSameWorkerStaysTracked(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctx := context.Background()
	started := make(chan int, 2)
	release := map[int]chan struct{}{1: make(chan struct{}), 2: make(chan struct{})}
	e.reg.Handle("slow", worker.HandlerFunc(func(_ context.Context, j *worker.Job) (json.RawMessage, error) {
		started <- j.Attempt
		<-release[j.Attempt] // busy with a unit of work, not watching ctx
		return json.RawMessage(`"done"`), nil
	}))
	j := e.submit(job.Submission{Type: "slow"})
	opts := e.options()
	opts.Concurrency = 2
	w := e.start("w1", opts)
	t.Cleanup(func() { // let the handlers return, so Stop returns
		for _, ch := range release {
			select {
			case <-ch:
			default:
				close(ch)
			}
		}
	})
	require.Equal(t, 1, receive(t, started))

	// The lease runs out while attempt 1 is busy (a stall, a missed
	// heartbeat); the reaper re-queues the job, and the same worker, which
	// has a free slot, starts attempt 2.
	e.clock.Advance(policy.Lease + time.Second)
	res, err := reaper.New(e.store, e.work, &reaper.Options{Policy: policy, Clock: e.clock, Metrics: e.m}).Sweep(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, res.Reclaimed)
	require.Equal(t, 2, receive(t, started))
	require.Equal(t, 2, w.Running(), "both runs are tracked")

	// Attempt 1 returns; its outcome is refused (fenced).
	close(release[1])
	require.Eventually(t, func() bool { return testutil.ToFloat64(e.m.LeasesLost.WithLabelValues("slow")) == 1 },
		10*time.Second, 5*time.Millisecond)
	// Attempt 1's run is untracked just after the counter moves.
	require.Eventually(t, func() bool { return w.Running() == 1 }, 10*time.Second, 5*time.Millisecond, "attempt 2 is still tracked")
	require.Never(t, func() bool { return w.Running() != 1 }, 50*time.Millisecond, 5*time.Millisecond, "attempt 2 is still tracked")

	// The heartbeat still renews attempt 2's lease.
	e.clock.Advance(time.Minute)
	w.HeartbeatNow(ctx)
	cur := e.get(j.ID)
	require.Equal(t, job.Running, cur.Status)
	require.Equal(t, 2, cur.Attempt)
	require.Equal(t, e.clock.Now().Add(policy.Lease), cur.LeaseUntil, "attempt 2's lease was renewed")

	close(release[2])
	done := e.waitStatus(j.ID, job.Succeeded)
	require.Equal(t, 2, done.Attempt)
	require.Equal(t, []job.Outcome{job.OutcomeLeaseExpired, job.OutcomeSucceeded},
		[]job.Outcome{done.History[0].Outcome, done.History[1].Outcome})
	require.Eventually(t, func() bool { return w.Running() == 0 }, 10*time.Second, 5*time.Millisecond)
}

// receive waits for a value from ch.
func receive[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatal("timed out waiting for the worker")
		var zero T
		return zero
	}
}

// A worker that cannot start a job because the store is down gives its
// message back sooner than the visibility timeout, but later with each
// receive, so that an outage of minutes does not spend the message's
// receives and send it to the dead-letter queue. Both ways a start can be
// refused count: the whole batched write, or its one entry. (Regression,
// found by the simulation: with a fixed give-back of 2 s, 20 s of outage
// spent the queue's 10 receives, and the reaper failed the job for good.)
func TestStoreOutageGivesMessagesBackLater(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name   string
		faults faultjobstore.Faults
	}{
		{"StoreUnavailable", faultjobstore.Faults{Unavailable: 1}},
		{"EntryUnavailable", faultjobstore.Faults{EntryUnavailable: 1}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			e := setup(t)
			e.reg.Handle("echo", worker.HandlerFunc(func(_ context.Context, j *worker.Job) (json.RawMessage, error) { return j.Payload, nil }))
			j := e.submit(job.Submission{Type: "echo", Payload: json.RawMessage(`1`)})
			down := faultjobstore.Wrap(e.store.Driver(), &faultjobstore.Options{Faults: c.faults})
			givenBack := make(chan time.Duration, 16)
			opts := e.options()
			opts.Policy = job.DefaultPolicy // lease 30 s
			opts.Heartbeat = 10 * time.Second
			opts.Visibility = 40 * time.Second
			w, err := worker.New("w1", jobstore.New(down, &jobstore.Options{Clock: e.clock}),
				queue.New(&visibilitySpy{Driver: e.work.Driver(), timeouts: givenBack}), e.blob, e.reg, opts)
			require.NoError(t, err)
			require.NoError(t, w.Start(context.Background()))
			t.Cleanup(w.Stop)

			// Nine receives fail to start the job: 2 s × 2^(receives−1),
			// capped at the visibility timeout, 222 s of outage in all.
			want := []time.Duration{2, 4, 8, 16, 32, 40, 40, 40, 40}
			for i, d := range want {
				require.Equal(t, d*time.Second, receive(t, givenBack), "give-back after receive %d", i+1)
				if i == len(want)-1 {
					down.SetFaults(faultjobstore.Faults{}) // the store is back
				}
				e.clock.Advance(d * time.Second)
			}
			done := e.waitStatus(j.ID, job.Succeeded)
			require.Equal(t, 1, done.Attempt)
			e.waitDrained()
			d, err := e.dlq.Depth(context.Background())
			require.NoError(t, err)
			require.Equal(t, queue.Depth{}, d, "nothing dead-lettered")
			res, err := reaper.New(e.store, e.work, &reaper.Options{Policy: policy, WorkDLQ: e.dlq, Clock: e.clock, Metrics: e.m}).Sweep(context.Background())
			require.NoError(t, err)
			require.Zero(t, res.DeadLettered)
		})
	}
}

// A renewal slower than the heartbeat interval still renews the lease (it
// may take until the lease runs out); a renewal that hangs gives the job up
// when its lease runs out, committing nothing.
func TestSlowRenewal(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name    string
		delay   time.Duration
		advance time.Duration // of the fake clock, which leases are on
		lost    bool
	}{
		// 59 minutes of lease left: six heartbeats are no reason to stop.
		{"SlowerThanHeartbeat", 300 * time.Millisecond, time.Minute, false},
		// 10 ms of lease left: the call is cut off after half a heartbeat
		// interval, and the job is given up.
		{"Hung", time.Hour, time.Hour - 10*time.Millisecond, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			e := setup(t)
			b := newBlocker()
			e.reg.Handle("block", b)
			j := e.submit(job.Submission{Type: "block"})
			slow := &slowApply{Driver: e.store.Driver()}
			opts := e.options()
			opts.Policy.Lease = time.Hour
			opts.Heartbeat = 50 * time.Millisecond
			w, err := worker.New("w1", jobstore.New(slow, &jobstore.Options{Clock: e.clock}), e.work, e.blob, e.reg, opts)
			require.NoError(t, err)
			require.NoError(t, w.Start(context.Background()))
			t.Cleanup(w.Stop)
			<-b.started
			// The clock first: a heartbeat that read the clock before the
			// advance must not meet the delay.
			e.clock.Advance(c.advance)
			slow.delay.Store(int64(c.delay)) // renewals from now on
			if c.lost {
				require.Eventually(t, func() bool { return testutil.ToFloat64(e.m.LeasesLost.WithLabelValues("block")) == 1 },
					10*time.Second, 5*time.Millisecond, "the job was given up")
				require.Eventually(t, func() bool { return w.Running() == 0 }, 10*time.Second, 5*time.Millisecond)
				require.Equal(t, job.Running, e.get(j.ID).Status, "nothing committed")
				return
			}
			require.Eventually(t, func() bool { return e.get(j.ID).LeaseUntil.Equal(t0.Add(c.advance + time.Hour)) },
				10*time.Second, 5*time.Millisecond, "a renewal six heartbeats long renewed the lease")
			close(b.release)
			done := e.waitStatus(j.ID, job.Succeeded)
			require.Equal(t, 1, done.Attempt)
			require.Zero(t, testutil.ToFloat64(e.m.LeasesLost.WithLabelValues("block")))
		})
	}
}

// slowApply delays every Apply by delay (nanoseconds; 0 at first) or until
// its context ends.
type slowApply struct {
	jobstore.Driver
	delay atomic.Int64
}

func (s *slowApply) Apply(ctx context.Context, changes []job.Change) ([]jobstore.ChangeResult, error) {
	if d := time.Duration(s.delay.Load()); d > 0 {
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return nil, errcode.Wrap(errcode.Canceled, ctx.Err(), "apply")
		}
	}
	return s.Driver.Apply(ctx, changes)
}

// visibilitySpy reports the timeout of every visibility change it passes on.
type visibilitySpy struct {
	queue.Driver
	timeouts chan<- time.Duration
}

func (s *visibilitySpy) ChangeVisibility(ctx context.Context, changes []queue.VisibilityChange) ([]error, error) {
	res, err := s.Driver.ChangeVisibility(ctx, changes)
	for _, c := range changes {
		s.timeouts <- c.Timeout
	}
	return res, err
}

// A job longer than SQS's 12-hour visibility limit: near the cap the worker
// deletes its message and goes on under its lease alone, so the message is
// neither redelivered (another worker would find a live lease and drop it)
// nor lost (if the worker died now, the reaper re-queues from the lease).
func TestJobLongerThanVisibilityCap(t *testing.T) {
	t.Parallel()
	e := setup(t)
	b := newBlocker()
	e.reg.Handle("block", b)
	// A duration cap raised past 12 hours (JOBFLEET_DURATION_CAP).
	limits := job.DefaultLimits
	limits.MaxTimeout = 24 * time.Hour
	sub := job.Submission{Type: "block", Timeout: job.Duration(20 * time.Hour)}
	require.NoError(t, sub.Validate(limits, t0))
	j := policy.New(&sub, limits, job.NewID(t0), t0)
	ctx := context.Background()
	_, err := e.store.Create(ctx, j)
	require.NoError(t, err)
	_, err = work.Enqueue(ctx, e.work, t0, j)
	require.NoError(t, err)
	w := e.start("w1", nil)
	<-b.started
	for e.depth().InFlight == 1 {
		require.Less(t, e.clock.Now().Sub(t0), queue.MaxVisibility, "the message outlived its visibility cap")
		e.clock.Advance(time.Hour)
		w.HeartbeatNow(ctx)
		r := e.get(j.ID)
		require.Equal(t, job.Running, r.Status)
		require.Equal(t, e.clock.Now().Add(policy.Lease), r.LeaseUntil, "the lease is still renewed")
	}
	require.Equal(t, queue.Depth{}, e.depth(), "deleted, not redelivered")
	e.clock.Advance(10 * time.Hour) // 19 h in, on the lease alone
	w.HeartbeatNow(ctx)
	require.Equal(t, job.Running, e.get(j.ID).Status)
	close(b.release)
	done := e.waitStatus(j.ID, job.Succeeded)
	require.Equal(t, 1, done.Attempt)
	require.Equal(t, queue.Depth{}, e.depth())
}

// A job re-queued while its cancel was pending (the request landed between
// its owner's last heartbeat and its re-queue) is cancelled by the next
// worker without running its handler.
func TestPendingCancelBeforeStartRunsNothing(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ran := make(chan string, 1)
	e.reg.Handle("echo", worker.HandlerFunc(func(_ context.Context, j *worker.Job) (json.RawMessage, error) {
		ran <- j.ID
		return j.Payload, nil
	}))
	j := e.submit(job.Submission{Type: "echo", Payload: json.RawMessage(`1`)})
	ctx := context.Background()
	// "w0" receives and starts it; a cancel is requested; w0, not having
	// seen it, re-queues the job after a failure.
	msgs, err := e.work.Receive(ctx, queue.ReceiveOptions{Max: 1, Visibility: time.Minute})
	require.NoError(t, err)
	require.Len(t, msgs, 1)
	running, err := e.store.ApplyOne(ctx, policy.Start(job.Message{ID: j.ID}, "w0", e.clock.Now()))
	require.NoError(t, err)
	c, ok := policy.RequestCancel(running, e.clock.Now())
	require.True(t, ok)
	_, err = e.store.ApplyOne(ctx, c)
	require.NoError(t, err)
	queued, err := e.store.ApplyOne(ctx, policy.Finish(running, e.clock.Now(), job.End{Outcome: job.OutcomeFailed, Reason: "boom"}))
	require.NoError(t, err)
	require.Equal(t, job.Queued, queued.Status)
	require.True(t, queued.CancelRequested)
	_, err = e.work.Delete(ctx, msgs[0].Handle)
	require.NoError(t, err)
	errs, err := work.Enqueue(ctx, e.work, e.clock.Now(), queued)
	require.NoError(t, err)
	require.NoError(t, errs[0])

	e.start("w1", nil)
	done := e.waitStatus(j.ID, job.Cancelled)
	require.Equal(t, 2, done.Attempt)
	last := done.History[len(done.History)-1]
	require.Equal(t, "w1", last.Owner)
	require.Equal(t, job.OutcomeCancelled, last.Outcome)
	e.waitDrained()
	select {
	case id := <-ran:
		t.Fatalf("handler ran for %s", id)
	default:
	}
}

// Writes that land but whose answer is lost: the worker reads the job to
// learn that its start landed (and runs it) and that its outcome landed
// (and deletes the message), instead of leaving the job to a lease expiry.
func TestUnansweredWritesThatLanded(t *testing.T) {
	t.Parallel()
	e := setup(t)
	var runs atomic.Int32
	e.reg.Handle("echo", worker.HandlerFunc(func(_ context.Context, j *worker.Job) (json.RawMessage, error) {
		runs.Add(1)
		return j.Payload, nil
	}))
	j := e.submit(job.Submission{Type: "echo", Payload: json.RawMessage(`1`)})
	ambiguous := faultjobstore.Wrap(e.store.Driver(), &faultjobstore.Options{Faults: faultjobstore.Faults{Ambiguous: 1}})
	w, err := worker.New("w1", jobstore.New(ambiguous, &jobstore.Options{Clock: e.clock}), e.work, e.blob, e.reg, e.options())
	require.NoError(t, err)
	require.NoError(t, w.Start(context.Background()))
	t.Cleanup(w.Stop)

	// The fake clock stands still: without the reads, the job would wait
	// for its lease (3 h) and the message for its visibility.
	done := e.waitStatus(j.ID, job.Succeeded)
	require.Equal(t, 1, done.Attempt)
	require.Equal(t, 0, done.Failures)
	e.waitDrained()
	require.Equal(t, int32(1), runs.Load())
	require.GreaterOrEqual(t, ambiguous.Stats().Ambiguous, 2, "the start and the finish were both unanswered")
}

// An outcome write refused before it reached the store is written again
// once a read shows its condition still holds.
func TestUnansweredFinishWrittenAgain(t *testing.T) {
	t.Parallel()
	e := setup(t)
	e.reg.Handle("echo", worker.HandlerFunc(func(_ context.Context, j *worker.Job) (json.RawMessage, error) { return j.Payload, nil }))
	j := e.submit(job.Submission{Type: "echo", Payload: json.RawMessage(`1`)})
	d := &failFinishOnce{Driver: e.store.Driver()}
	w, err := worker.New("w1", jobstore.New(d, &jobstore.Options{Clock: e.clock}), e.work, e.blob, e.reg, e.options())
	require.NoError(t, err)
	require.NoError(t, w.Start(context.Background()))
	t.Cleanup(w.Stop)
	done := e.waitStatus(j.ID, job.Succeeded)
	require.Equal(t, 1, done.Attempt)
	e.waitDrained()
	require.True(t, d.failed.Load(), "the first outcome write was refused")
}

// failFinishOnce refuses the first Apply that carries an outcome, before
// it reaches the store.
type failFinishOnce struct {
	jobstore.Driver
	failed atomic.Bool
}

func (d *failFinishOnce) Apply(ctx context.Context, changes []job.Change) ([]jobstore.ChangeResult, error) {
	for _, c := range changes {
		if c.Event == job.EventFinish && d.failed.CompareAndSwap(false, true) {
			return nil, errcode.New(errcode.Unavailable, "connection reset")
		}
	}
	return d.Driver.Apply(ctx, changes)
}
