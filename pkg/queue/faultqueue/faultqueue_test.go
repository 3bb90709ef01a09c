package faultqueue_test

import (
	"context"
	"fmt"
	"math/rand/v2"
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
	q, fd := faultqueue.New(raw.Driver(), &faultqueue.Options{Faults: f, Rand: rand.New(rand.NewPCG(3, 4))})
	return &env{t: t, clk: clk, raw: raw, q: q, fd: fd}
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
