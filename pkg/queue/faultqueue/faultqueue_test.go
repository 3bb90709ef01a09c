package faultqueue_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/jobfleet/jobfleet/pkg/clock"
	"github.com/jobfleet/jobfleet/pkg/errcode"
	"github.com/jobfleet/jobfleet/pkg/queue"
	"github.com/jobfleet/jobfleet/pkg/queue/faultqueue"
	"github.com/jobfleet/jobfleet/pkg/queue/memqueue"
	"github.com/jobfleet/jobfleet/pkg/queue/queuetest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var epoch = time.Date(2031, 3, 4, 5, 6, 7, 890_000_000, time.UTC)

// Without faults the wrapper is transparent: it passes the suite.
func TestConformanceWithoutFaults(t *testing.T) {
	t.Parallel()
	queuetest.Run(t, func(t *testing.T, cfg queuetest.Config) queuetest.Harness {
		clk := clock.NewFake(epoch)
		b := memqueue.New(&memqueue.Options{Clock: clk})
		t.Cleanup(func() { require.NoError(t, b.Close()) })
		name := queuetest.Name(t)
		qc := memqueue.Config{Visibility: cfg.Visibility}
		open := func(ctx context.Context, name string) (*queue.Queue, error) {
			q, err := b.Open(ctx, name)
			if err != nil {
				return nil, err
			}
			fq, _ := faultqueue.New(q.Driver(), nil)
			return fq, nil
		}
		h := queuetest.Harness{Advance: func(d time.Duration) { clk.Advance(d) }, FakeTime: true, Clock: clk, Open: open}
		var err error
		if cfg.MaxReceives > 0 {
			qc.DeadLetter, qc.MaxReceives = name+"-dlq", cfg.MaxReceives
			require.NoError(t, b.CreateQueue(t.Context(), qc.DeadLetter, memqueue.Config{Visibility: cfg.Visibility}))
			h.DLQ, err = open(t.Context(), qc.DeadLetter)
			require.NoError(t, err)
			t.Cleanup(func() { h.DLQ.Close() })
		}
		require.NoError(t, b.CreateQueue(t.Context(), name, qc))
		h.Queue, err = open(t.Context(), name)
		require.NoError(t, err)
		t.Cleanup(func() { h.Queue.Close() })
		return h
	})
}

type env struct {
	t   *testing.T
	clk *clock.Fake
	raw *queue.Queue // the queue, without faults
	q   *queue.Queue // through the faults
	fd  *faultqueue.Driver

	mu    sync.Mutex
	slept []time.Duration // what slow calls waited
}

func setup(t *testing.T, f faultqueue.Faults) *env {
	t.Helper()
	ctx := context.Background()
	clk := clock.NewFake(epoch)
	b := memqueue.New(&memqueue.Options{Clock: clk})
	t.Cleanup(func() { b.Close() })
	require.NoError(t, b.CreateQueue(ctx, "q", memqueue.Config{Visibility: 30 * time.Second}))
	raw, err := b.Open(ctx, "q")
	require.NoError(t, err)
	e := &env{t: t, clk: clk, raw: raw}
	e.q, e.fd = faultqueue.New(raw.Driver(), &faultqueue.Options{
		Faults: f,
		Rand:   rand.New(rand.NewPCG(3, 4)),
		Sleep: func(ctx context.Context, d time.Duration) error {
			e.mu.Lock()
			defer e.mu.Unlock()
			e.slept = append(e.slept, d)
			return ctx.Err()
		},
	})
	return e
}

func (e *env) depth() queue.Depth {
	e.t.Helper()
	d, err := e.raw.Depth(context.Background())
	require.NoError(e.t, err)
	return d
}

func (e *env) send(n int) []queue.SendResult {
	e.t.Helper()
	entries := make([]queue.SendEntry, n)
	for i := range entries {
		entries[i] = queue.SendEntry{Body: fmt.Appendf(nil, "m%d", i)}
	}
	res, err := e.q.Send(context.Background(), entries...)
	require.NoError(e.t, err)
	require.Len(e.t, res, n)
	for _, r := range res {
		require.NoError(e.t, r.Err)
		require.NotEmpty(e.t, r.ID)
	}
	return res
}

func (e *env) receive(q *queue.Queue) []*queue.Message {
	e.t.Helper()
	msgs, err := q.Receive(context.Background(), queue.ReceiveOptions{Max: queue.MaxBatch})
	require.NoError(e.t, err)
	return msgs
}

func TestLose(t *testing.T) {
	t.Parallel()
	e := setup(t, faultqueue.Faults{Lose: 1})
	e.send(3)
	require.Equal(t, queue.Depth{}, e.depth(), "reported sent, never stored")
	require.Equal(t, 3, e.fd.Stats().Lost)
}

func TestDuplicate(t *testing.T) {
	t.Parallel()
	e := setup(t, faultqueue.Faults{Duplicate: 1})
	res := e.send(queue.MaxBatch) // doubled past the driver's batch limit
	require.Equal(t, queue.Depth{Visible: 2 * queue.MaxBatch}, e.depth())
	bodies := map[string]int{}
	for len(bodies) < queue.MaxBatch || bodies["m0"] < 2 {
		msgs := e.receive(e.raw)
		require.NotEmpty(t, msgs)
		for _, m := range msgs {
			bodies[string(m.Body)]++
		}
	}
	for i := range queue.MaxBatch {
		require.Equal(t, 2, bodies[fmt.Sprintf("m%d", i)])
	}
	require.Equal(t, queue.MaxBatch, e.fd.Stats().Duplicated)
	require.NotEqual(t, res[0].ID, res[1].ID)
}

func TestDelay(t *testing.T) {
	t.Parallel()
	e := setup(t, faultqueue.Faults{Delay: 1, MaxDelay: 5 * time.Second})
	e.send(4)
	require.Equal(t, queue.Depth{Delayed: 4}, e.depth())
	e.clk.Advance(5 * time.Second)
	require.Equal(t, queue.Depth{Visible: 4}, e.depth(), "at most MaxDelay late")
	require.Equal(t, 4, e.fd.Stats().Delayed)
}

func TestLoseDelete(t *testing.T) {
	t.Parallel()
	e := setup(t, faultqueue.Faults{LoseDelete: 1})
	e.send(1)
	m := e.receive(e.q)[0]
	errs, err := e.q.Delete(context.Background(), m.Handle)
	require.NoError(t, err)
	require.NoError(t, errs[0], "reported deleted")
	require.Equal(t, queue.Depth{InFlight: 1}, e.depth(), "still there")
	e.clk.Advance(30 * time.Second)
	again := e.receive(e.q)
	require.Len(t, again, 1)
	require.Equal(t, m.ID, again[0].ID)
	require.Equal(t, 1, e.fd.Stats().DeletesLost)
}

func TestLoseVisibility(t *testing.T) {
	t.Parallel()
	e := setup(t, faultqueue.Faults{LoseVisibility: 1})
	e.send(1)
	m := e.receive(e.q)[0]
	errs, err := e.q.ChangeVisibility(context.Background(), queue.VisibilityChange{Handle: m.Handle, Timeout: 0})
	require.NoError(t, err)
	require.NoError(t, errs[0], "reported changed")
	require.Equal(t, queue.Depth{InFlight: 1}, e.depth(), "still invisible")
	require.Equal(t, 1, e.fd.Stats().VisibilityLost)
}

func TestUnavailable(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := setup(t, faultqueue.Faults{Unavailable: 1})
	_, err := e.q.Send(ctx, queue.SendEntry{Body: []byte("x")})
	require.Equal(t, errcode.Unavailable, errcode.Of(err))
	require.Equal(t, queue.Depth{}, e.depth())
	_, err = e.q.Receive(ctx, queue.ReceiveOptions{})
	require.Equal(t, errcode.Unavailable, errcode.Of(err))
	_, err = e.q.Delete(ctx, "h")
	require.Equal(t, errcode.Unavailable, errcode.Of(err))
	_, err = e.q.ChangeVisibility(ctx, queue.VisibilityChange{Handle: "h"})
	require.Equal(t, errcode.Unavailable, errcode.Of(err))
	_, err = e.q.Depth(ctx)
	require.Equal(t, errcode.Unavailable, errcode.Of(err))
	require.Equal(t, 5, e.fd.Stats().Unavailable)

	e.fd.SetFaults(faultqueue.Faults{})
	require.Equal(t, faultqueue.Faults{}, e.fd.Faults())
	e.send(1)
	require.Equal(t, queue.Depth{Visible: 1}, e.depth())
}

func TestPartialFaults(t *testing.T) {
	t.Parallel()
	// Some entries of a batch are hit, the others go through; the same
	// seed hits the same ones.
	run := func() (queue.Depth, faultqueue.Stats) {
		e := setup(t, faultqueue.Faults{Lose: 0.3, Duplicate: 0.3})
		e.send(50)
		return e.depth(), e.fd.Stats()
	}
	d, s := run()
	require.Positive(t, s.Lost)
	require.Positive(t, s.Duplicated)
	require.Equal(t, int64(50-s.Lost+s.Duplicated), d.Visible)
	d2, s2 := run()
	require.Equal(t, d, d2)
	require.Equal(t, s, s2)
}

// every makes each call but Receive once through the faults and returns
// their errors.
func (e *env) every() []error {
	ctx := context.Background()
	var errs []error
	_, err := e.q.Send(ctx, queue.SendEntry{Body: []byte("x")})
	errs = append(errs, err)
	_, err = e.q.Delete(ctx, "h")
	errs = append(errs, err)
	_, err = e.q.ChangeVisibility(ctx, queue.VisibilityChange{Handle: "h"})
	errs = append(errs, err)
	_, err = e.q.Depth(ctx)
	errs = append(errs, err)
	return errs
}

func TestThrottled(t *testing.T) {
	t.Parallel()
	e := setup(t, faultqueue.Faults{Throttled: 1})
	_, err := e.q.Receive(context.Background(), queue.ReceiveOptions{})
	errs := append(e.every(), err)
	for i, err := range errs {
		require.Equal(t, errcode.Unavailable, errcode.Of(err), "call %d: %v", i, err)
		require.True(t, errcode.Retryable(err))
		require.Contains(t, err.Error(), "ThrottlingException")
	}
	require.Equal(t, queue.Depth{}, e.depth(), "nothing sent")
	require.Equal(t, faultqueue.Stats{Throttled: 5}, e.fd.Stats())
}

// With every fraction 0 the wrapper changes nothing, and waits for nothing
// even with a latency set.
func TestNoFaults(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := setup(t, faultqueue.Faults{MaxLatency: time.Hour, MaxDelay: time.Hour})
	e.send(3)
	require.Equal(t, queue.Depth{Visible: 3}, e.depth())
	msgs := e.receive(e.q)
	require.Len(t, msgs, 3)
	errs, err := e.q.ChangeVisibility(ctx, queue.VisibilityChange{Handle: msgs[0].Handle, Timeout: time.Minute})
	require.NoError(t, err)
	require.NoError(t, errs[0])
	errs, err = e.q.Delete(ctx, msgs[1].Handle, msgs[2].Handle)
	require.NoError(t, err)
	require.Equal(t, []error{nil, nil}, errs)
	require.Equal(t, queue.Depth{InFlight: 1}, e.depth())
	require.Empty(t, e.slept)
	require.Equal(t, faultqueue.Stats{}, e.fd.Stats())
}

func TestSlow(t *testing.T) {
	t.Parallel()
	e := setup(t, faultqueue.Faults{Slow: 1, MaxLatency: 3 * time.Second})
	_, err := e.q.Receive(context.Background(), queue.ReceiveOptions{})
	require.NoError(t, err, "a slow call goes through")
	for _, err := range e.every() {
		require.NoError(t, err)
	}
	require.Equal(t, queue.Depth{Visible: 1}, e.depth())
	require.Len(t, e.slept, 5)
	for _, d := range e.slept {
		require.Positive(t, d)
		require.LessOrEqual(t, d, 3*time.Second)
	}
	require.Equal(t, faultqueue.Stats{Slow: 5}, e.fd.Stats())

	// A slow call whose context ends while it waits fails with it and does
	// not reach the queue.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = e.q.Send(ctx, queue.SendEntry{Body: []byte("late")})
	require.Equal(t, errcode.Canceled, errcode.Of(err))
	require.Equal(t, queue.Depth{Visible: 1}, e.depth())
}

// The default sleep waits on a real timer and ends with the context.
func TestRealSleep(t *testing.T) {
	t.Parallel()
	b := memqueue.New(nil)
	t.Cleanup(func() { b.Close() })
	require.NoError(t, b.CreateQueue(t.Context(), "q", memqueue.Config{}))
	raw, err := b.Open(t.Context(), "q")
	require.NoError(t, err)
	q, fd := faultqueue.New(raw.Driver(), &faultqueue.Options{Faults: faultqueue.Faults{Slow: 1, MaxLatency: time.Hour}})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = q.Send(ctx, queue.SendEntry{Body: []byte("x")})
	require.Equal(t, errcode.Canceled, errcode.Of(err))
	require.Less(t, time.Since(start), 10*time.Second, "returned when the context ended, not after the latency")
	d, err := raw.Depth(t.Context())
	require.NoError(t, err)
	require.Equal(t, queue.Depth{}, d, "nothing sent")
	require.Equal(t, 1, fd.Stats().Slow)
}

func requireEntryUnavailable(t *testing.T, err error) {
	t.Helper()
	require.Equal(t, errcode.Unavailable, errcode.Of(err), "%v", err)
	require.True(t, errcode.Retryable(err))
}

// Every entry fails alone: the calls succeed, nothing is sent, deleted or
// changed.
func TestEntryUnavailableAll(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := setup(t, faultqueue.Faults{EntryUnavailable: 1})
	res, err := e.q.Send(ctx, queue.SendEntry{Body: []byte("a")}, queue.SendEntry{Body: []byte("b")})
	require.NoError(t, err)
	for _, r := range res {
		requireEntryUnavailable(t, r.Err)
		require.Empty(t, r.ID)
	}
	require.Equal(t, queue.Depth{}, e.depth(), "nothing sent")

	_, err = e.raw.Send(ctx, queue.SendEntry{Body: []byte("m")})
	require.NoError(t, err)
	m := e.receive(e.q)[0]
	errs, err := e.q.ChangeVisibility(ctx, queue.VisibilityChange{Handle: m.Handle, Timeout: 0})
	require.NoError(t, err)
	requireEntryUnavailable(t, errs[0])
	errs, err = e.q.Delete(ctx, m.Handle)
	require.NoError(t, err)
	requireEntryUnavailable(t, errs[0])
	require.Equal(t, queue.Depth{InFlight: 1}, e.depth(), "neither made visible nor deleted")
	require.Equal(t, faultqueue.Stats{EntryUnavailable: 4}, e.fd.Stats())
}

// Some entries of a batch fail, the others go through as if alone.
func TestEntryUnavailablePartial(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := setup(t, faultqueue.Faults{EntryUnavailable: 0.5})
	entries := make([]queue.SendEntry, 40)
	for i := range entries {
		entries[i] = queue.SendEntry{Body: fmt.Appendf(nil, "m%d", i)}
	}
	res, err := e.q.Send(ctx, entries...)
	require.NoError(t, err)
	sent := map[string]bool{}
	for i, r := range res {
		if r.Err != nil {
			requireEntryUnavailable(t, r.Err)
			require.Empty(t, r.ID)
			continue
		}
		require.NotEmpty(t, r.ID)
		sent[string(entries[i].Body)] = true
	}
	failedSends := len(entries) - len(sent)
	require.Greater(t, failedSends, 5)
	require.Less(t, failedSends, 35)
	require.Equal(t, queue.Depth{Visible: int64(len(sent))}, e.depth())

	// What arrives is exactly what was reported sent.
	var msgs []*queue.Message
	for len(msgs) < len(sent) {
		got := e.receive(e.raw)
		require.NotEmpty(t, got)
		msgs = append(msgs, got...)
	}
	var handles []string
	for _, m := range msgs {
		require.True(t, sent[string(m.Body)], "%s was not reported sent", m.Body)
		handles = append(handles, m.Handle)
	}

	// Deleted handles are gone; the failed ones stay in flight and come
	// back after their visibility timeout.
	errs, err := e.q.Delete(ctx, handles...)
	require.NoError(t, err)
	kept := 0
	for _, err := range errs {
		if err != nil {
			requireEntryUnavailable(t, err)
			kept++
		}
	}
	require.Positive(t, kept)
	require.Less(t, kept, len(handles))
	require.Equal(t, queue.Depth{InFlight: int64(kept)}, e.depth())
	e.clk.Advance(30 * time.Second)
	require.Equal(t, queue.Depth{Visible: int64(kept)}, e.depth())
	require.Equal(t, failedSends+kept, e.fd.Stats().EntryUnavailable)

	// Visibility changes: the failed ones leave their message invisible.
	again := e.receive(e.raw)
	require.NotEmpty(t, again)
	changes := make([]queue.VisibilityChange, len(again))
	for i, m := range again {
		changes[i] = queue.VisibilityChange{Handle: m.Handle, Timeout: 0}
	}
	e.fd.SetFaults(faultqueue.Faults{EntryUnavailable: 1})
	errs, err = e.q.ChangeVisibility(ctx, changes...)
	require.NoError(t, err)
	for _, err := range errs {
		requireEntryUnavailable(t, err)
	}
	require.Equal(t, int64(len(again)), e.depth().InFlight)
	e.fd.SetFaults(faultqueue.Faults{})
	errs, err = e.q.ChangeVisibility(ctx, changes...)
	require.NoError(t, err)
	for _, err := range errs {
		require.NoError(t, err)
	}
	require.Zero(t, e.depth().InFlight)
}

// Entry failures and losses of one batch: a failed entry is not also lost.
func TestEntryUnavailableWithLoss(t *testing.T) {
	t.Parallel()
	e := setup(t, faultqueue.Faults{EntryUnavailable: 0.3, Lose: 0.3})
	entries := make([]queue.SendEntry, 60)
	for i := range entries {
		entries[i] = queue.SendEntry{Body: fmt.Appendf(nil, "m%d", i)}
	}
	res, err := e.q.Send(context.Background(), entries...)
	require.NoError(t, err)
	failed := 0
	for _, r := range res {
		if r.Err != nil {
			failed++
			require.Empty(t, r.ID)
		}
	}
	s := e.fd.Stats()
	require.Equal(t, s.EntryUnavailable, failed)
	require.Positive(t, s.Lost)
	require.Equal(t, int64(len(entries)-failed-s.Lost), e.depth().Visible)
}
