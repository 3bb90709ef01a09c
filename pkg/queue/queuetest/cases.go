package queuetest

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/stretchr/testify/require"

	"github.com/jobfleet/jobfleet/pkg/errcode"
	"github.com/jobfleet/jobfleet/pkg/queue"
)

// testRoundTrip: bodies and attributes come back byte for byte, with the
// id Send returned, the send time, a handle and ReceiveCount 1.
func testRoundTrip(t *testing.T, mk func(*testing.T, Config) *env) {
	e := mk(t, Config{Visibility: 30 * time.Second})
	entries := []queue.SendEntry{
		{Body: []byte("hello")},
		{Body: []byte("héllo wörld — 日本語 — 🚀🎉"), Attributes: map[string]string{
			"type":          "email",
			"trace-id":      "abc.def",
			"Unicode_Value": "ünïcødé 🚀",
		}},
		{Body: []byte(`{"id":"01HZY3","attempt":3,"payload":"\u00e9"}`)},
		{Body: []byte("  leading and trailing spaces  ")},
		{Body: []byte("tab\tnewline\ncarriage return\r\nend")},
		{Body: []byte(strings.Repeat("0123456789", 100)), Attributes: map[string]string{"a": "1"}},
	}
	before := e.h.Clock.Now()
	ids := e.send(e.q, entries...)
	after := e.h.Clock.Now()
	seen := map[string]bool{}
	for _, id := range ids {
		require.False(t, seen[id], "message id %s issued twice", id)
		seen[id] = true
	}

	got := byBody(t, e.receiveN(e.q, len(entries), queue.ReceiveOptions{}))
	handles := map[string]bool{}
	for i, want := range entries {
		m, ok := got[string(want.Body)]
		require.True(t, ok, "entry %d not received", i)
		require.Equal(t, ids[i], m.ID, "entry %d id", i)
		require.True(t, bytes.Equal(want.Body, m.Body), "entry %d body: got %q", i, m.Body)
		if diff := cmp.Diff(want.Attributes, m.Attributes, cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("entry %d attributes (-sent +received):\n%s", i, diff)
		}
		require.Equal(t, 1, m.ReceiveCount, "entry %d", i)
		require.NotEmpty(t, m.Handle, "entry %d", i)
		require.False(t, handles[m.Handle], "handle issued twice")
		handles[m.Handle] = true
		require.Equal(t, time.UTC, m.SentAt.Location(), "SentAt is UTC")
		tol := time.Millisecond // backends keep milliseconds
		if !e.h.FakeTime {
			tol = 2 * time.Second // and their clocks may differ from ours
		}
		require.False(t, m.SentAt.Before(before.Add(-tol)) || m.SentAt.After(after.Add(tol)),
			"entry %d: SentAt %s outside [%s, %s]", i, m.SentAt, before, after)
	}
	e.requireEmpty(e.q, 0)
}

// testMessageSize: the size limit counts body and attributes in bytes;
// a message of exactly MaxMessageSize goes through intact, one byte more
// fails that entry alone.
func testMessageSize(t *testing.T, mk func(*testing.T, Config) *env) {
	e := mk(t, Config{Visibility: 30 * time.Second})
	attrs := map[string]string{"kind": "large", "encoding": "utf-8"}
	rest := queue.MaxMessageSize - queue.Size(nil, attrs)
	exact := queue.SendEntry{Body: body(queue.MaxMessageSize)}
	exactAttrs := queue.SendEntry{Body: body(rest), Attributes: attrs}
	require.Equal(t, queue.MaxMessageSize, queue.Size(exactAttrs.Body, attrs))

	for _, pair := range [][2]queue.SendEntry{
		{exact, {Body: body(queue.MaxMessageSize + 1)}},
		{exactAttrs, {Body: body(rest + 1), Attributes: attrs}},
	} {
		res, err := e.q.Send(e.ctx, pair[0], pair[1])
		require.NoError(t, err)
		require.Len(t, res, 2)
		require.NoError(t, res[0].Err, "a message of exactly MaxMessageSize bytes")
		require.NotEmpty(t, res[0].ID)
		requireCode(t, errcode.InvalidArgument, res[1].Err, "a message one byte over")
		require.Empty(t, res[1].ID)
	}

	msgs := e.receiveN(e.q, 2, queue.ReceiveOptions{})
	for _, m := range msgs {
		want := exact
		if len(m.Attributes) > 0 {
			want = exactAttrs
		}
		require.True(t, bytes.Equal(want.Body, m.Body), "body of %d bytes came back as %d bytes", len(want.Body), len(m.Body))
		require.Equal(t, want.Attributes, m.Attributes)
	}
	e.requireEmpty(e.q, 0)
}

// testBatchSend: Queue splits 25 entries into driver batches; an invalid
// entry in the middle fails alone and the others are sent.
func testBatchSend(t *testing.T, mk func(*testing.T, Config) *env) {
	e := mk(t, Config{Visibility: 30 * time.Second})
	const n, bad = 25, 12
	entries := make([]queue.SendEntry, n)
	for i := range entries {
		entries[i] = queue.SendEntry{Body: fmt.Appendf(nil, "message %02d", i)}
	}
	entries[bad].Body = nil
	res, err := e.q.Send(e.ctx, entries...)
	require.NoError(t, err)
	require.Len(t, res, n)
	ids := map[string]int{}
	for i, r := range res {
		if i == bad {
			requireCode(t, errcode.InvalidArgument, r.Err, "entry %d", i)
			require.Empty(t, r.ID)
			continue
		}
		require.NoError(t, r.Err, "entry %d", i)
		_, dup := ids[r.ID]
		require.False(t, dup, "id %s returned twice", r.ID)
		ids[r.ID] = i
	}
	e.requireDepth(e.q, queue.Depth{Visible: n - 1})

	msgs := e.receiveN(e.q, n-1, queue.ReceiveOptions{})
	for _, m := range msgs {
		i, ok := ids[m.ID]
		require.True(t, ok, "received unknown id %s", m.ID)
		require.Equal(t, string(entries[i].Body), string(m.Body))
		delete(ids, m.ID)
	}
	require.Empty(t, ids, "not received")
	e.requireEmpty(e.q, 0)
}

// testDelay: a delayed message is invisible and counted as Delayed until
// its delay has passed.
func testDelay(t *testing.T, mk func(*testing.T, Config) *env) {
	e := mk(t, Config{Visibility: 30 * time.Second})
	ids := e.send(e.q,
		queue.SendEntry{Body: []byte("delayed"), Delay: 2 * time.Second},
		queue.SendEntry{Body: []byte("now")},
	)
	e.requireDepth(e.q, queue.Depth{Visible: 1, Delayed: 1})
	m := e.receiveOne(e.q, queue.ReceiveOptions{Max: queue.MaxBatch})
	require.Equal(t, "now", string(m.Body))
	e.requireEmpty(e.q, 0)

	e.h.Advance(time.Second)
	e.requireEmpty(e.q, 0)
	e.requireDepth(e.q, queue.Depth{InFlight: 1, Delayed: 1})

	e.advance(time.Second)
	d := e.receiveOne(e.q, queue.ReceiveOptions{})
	require.Equal(t, ids[0], d.ID)
	require.Equal(t, "delayed", string(d.Body))
	require.Equal(t, 1, d.ReceiveCount)
	e.requireDepth(e.q, queue.Depth{InFlight: 2})
}

func testVisibility(t *testing.T, mk func(*testing.T, Config) *env) {
	t.Run("RedeliveredAfterTimeout", func(t *testing.T) {
		t.Parallel()
		e := mk(t, Config{Visibility: 2 * time.Second})
		e.send(e.q, queue.SendEntry{Body: []byte("m"), Attributes: map[string]string{"k": "v"}})
		first := e.receiveOne(e.q, queue.ReceiveOptions{})
		e.requireEmpty(e.q, 0)
		e.h.Advance(time.Second)
		e.requireEmpty(e.q, 0)
		e.requireDepth(e.q, queue.Depth{InFlight: 1})

		e.advance(time.Second)
		e.requireDepth(e.q, queue.Depth{Visible: 1})
		again := e.receiveOne(e.q, queue.ReceiveOptions{})
		requireSameMessage(t, first, again)
		require.Equal(t, 2, again.ReceiveCount)
		require.NotEqual(t, first.Handle, again.Handle, "a new receive issues a new handle")
	})

	t.Run("PerReceiveOverride", func(t *testing.T) {
		t.Parallel()
		e := mk(t, Config{Visibility: 3 * time.Second})
		e.sendBodies(e.q, "m")
		first := e.receiveOne(e.q, queue.ReceiveOptions{Visibility: time.Second})
		require.Equal(t, 1, first.ReceiveCount)
		e.advance(time.Second)

		// The override applied to that receive only: this one gets the
		// queue's default again.
		second := e.receiveOne(e.q, queue.ReceiveOptions{})
		require.Equal(t, 2, second.ReceiveCount)
		e.advance(time.Second)
		e.requireEmpty(e.q, 0)
		e.h.Advance(2 * time.Second)
		third := e.receiveOne(e.q, queue.ReceiveOptions{})
		require.Equal(t, 3, third.ReceiveCount)
	})
}

func testChangeVisibility(t *testing.T, mk func(*testing.T, Config) *env) {
	t.Run("ExtendCountsFromCall", func(t *testing.T) {
		t.Parallel()
		e := mk(t, Config{Visibility: 2 * time.Second})
		e.sendBodies(e.q, "m")
		m := e.receiveOne(e.q, queue.ReceiveOptions{})
		e.h.Advance(time.Second)
		require.NoError(t, e.changeOne(e.q, m.Handle, 2*time.Second))

		// Past the original timeout, and past 2 s from the receive: still
		// invisible, because the new timeout counts from the call.
		e.advance(time.Second)
		e.requireEmpty(e.q, 0)
		e.requireDepth(e.q, queue.Depth{InFlight: 1})

		e.h.Advance(time.Second)
		again := e.receiveOne(e.q, queue.ReceiveOptions{})
		require.Equal(t, m.ID, again.ID)
		require.Equal(t, 2, again.ReceiveCount)
	})

	t.Run("ZeroMakesVisible", func(t *testing.T) {
		t.Parallel()
		e := mk(t, Config{Visibility: 30 * time.Second})
		e.sendBodies(e.q, "m")
		m := e.receiveOne(e.q, queue.ReceiveOptions{})
		require.NoError(t, e.changeOne(e.q, m.Handle, 0))
		e.requireDepth(e.q, queue.Depth{Visible: 1})
		again := e.receiveOne(e.q, queue.ReceiveOptions{})
		require.Equal(t, m.ID, again.ID)
		require.Equal(t, 2, again.ReceiveCount)
		require.NotEqual(t, m.Handle, again.Handle)
	})

	t.Run("BatchPerEntry", func(t *testing.T) {
		t.Parallel()
		e := mk(t, Config{Visibility: 30 * time.Second})
		e.skipFor(OldHandlesAct, DeletedHandleMalformed)
		e.sendBodies(e.q, "a", "b", "c")
		got := byBody(t, e.receiveN(e.q, 3, queue.ReceiveOptions{}))
		a, b, c := got["a"], got["b"], got["c"]
		require.NoError(t, e.changeOne(e.q, a.Handle, 0))
		a2 := e.receiveOne(e.q, queue.ReceiveOptions{})
		require.Equal(t, a.ID, a2.ID)
		e.deleteAll(e.q, b.Handle)

		errs, err := e.q.ChangeVisibility(e.ctx,
			queue.VisibilityChange{Handle: a.Handle, Timeout: 0},                                 // stale: a was received again
			queue.VisibilityChange{Handle: a2.Handle, Timeout: time.Minute},                      // current
			queue.VisibilityChange{Handle: b.Handle, Timeout: 0},                                 // deleted
			queue.VisibilityChange{Handle: "", Timeout: 0},                                       // empty
			queue.VisibilityChange{Handle: "not-a-receipt-handle", Timeout: 0},                   // malformed
			queue.VisibilityChange{Handle: c.Handle, Timeout: 0},                                 // current
			queue.VisibilityChange{Handle: c.Handle, Timeout: queue.MaxVisibility + time.Second}, // out of range
		)
		require.NoError(t, err)
		require.Len(t, errs, 7)
		requireCode(t, errcode.FailedPrecondition, errs[0], "stale handle")
		require.NoError(t, errs[1], "current handle")
		requireCode(t, errcode.FailedPrecondition, errs[2], "deleted message")
		requireCode(t, errcode.InvalidArgument, errs[3], "empty handle")
		requireCode(t, errcode.InvalidArgument, errs[4], "malformed handle")
		require.NoError(t, errs[5], "current handle")
		requireCode(t, errcode.InvalidArgument, errs[6], "timeout over MaxVisibility")

		// Only c became visible; a2 stays hidden.
		e.requireDepth(e.q, queue.Depth{Visible: 1, InFlight: 1})
		c2 := e.receiveOne(e.q, queue.ReceiveOptions{Max: queue.MaxBatch})
		require.Equal(t, c.ID, c2.ID)
		e.requireEmpty(e.q, 0)
	})

	t.Run("MaxVisibilityFromReceive", func(t *testing.T) {
		t.Parallel()
		e := mk(t, Config{Visibility: 30 * time.Second})
		e.sendBodies(e.q, "m")
		m := e.receiveOne(e.q, queue.ReceiveOptions{})
		require.NoError(t, e.changeOne(e.q, m.Handle, time.Minute), "a change within the limit")
		requireCode(t, errcode.InvalidArgument, e.changeOne(e.q, m.Handle, queue.MaxVisibility+time.Second))
		if !e.h.FakeTime {
			t.Log("real time: the 12-hour limit is checked only with a fake clock")
			return
		}
		require.NoError(t, e.changeOne(e.q, m.Handle, queue.MaxVisibility), "12 h from the receive")
		e.h.Advance(time.Hour)
		require.NoError(t, e.changeOne(e.q, m.Handle, queue.MaxVisibility-time.Hour), "up to 12 h after the receive")
		requireCode(t, errcode.InvalidArgument, e.changeOne(e.q, m.Handle, queue.MaxVisibility-time.Hour+time.Second),
			"beyond 12 h after the receive")
		e.h.Advance(6 * time.Hour)
		requireCode(t, errcode.InvalidArgument, e.changeOne(e.q, m.Handle, 6*time.Hour),
			"a rejected change leaves the message as it was, still limited by its receive")
		e.requireDepth(e.q, queue.Depth{InFlight: 1})

		// A new receive starts a new 12 hours.
		require.NoError(t, e.changeOne(e.q, m.Handle, 0))
		m2 := e.receiveOne(e.q, queue.ReceiveOptions{})
		require.NoError(t, e.changeOne(e.q, m2.Handle, queue.MaxVisibility))
	})
}

func testDelete(t *testing.T, mk func(*testing.T, Config) *env) {
	t.Run("NeverComesBack", func(t *testing.T) {
		t.Parallel()
		e := mk(t, Config{Visibility: 2 * time.Second})
		e.sendBodies(e.q, "m")
		m := e.receiveOne(e.q, queue.ReceiveOptions{})
		e.deleteAll(e.q, m.Handle)
		e.requireDepth(e.q, queue.Depth{})
		e.advance(2 * time.Second)
		e.requireEmpty(e.q, emptyWait)
		e.requireDepth(e.q, queue.Depth{})
	})

	t.Run("StaleHandleDoesNotDelete", func(t *testing.T) {
		t.Parallel()
		e := mk(t, Config{Visibility: 2 * time.Second})
		e.skipFor(OldHandlesAct)
		e.sendBodies(e.q, "m")
		first := e.receiveOne(e.q, queue.ReceiveOptions{})
		e.advance(2 * time.Second)
		second := e.receiveOne(e.q, queue.ReceiveOptions{})
		require.Equal(t, 2, second.ReceiveCount)

		e.deleteAll(e.q, first.Handle) // succeeds, as SQS documents
		e.requireDepth(e.q, queue.Depth{InFlight: 1})
		e.advance(2 * time.Second)
		third := e.receiveOne(e.q, queue.ReceiveOptions{})
		require.Equal(t, first.ID, third.ID)
		require.Equal(t, 3, third.ReceiveCount)
		e.deleteAll(e.q, third.Handle)
		e.requireDepth(e.q, queue.Depth{})
	})

	t.Run("Twice", func(t *testing.T) {
		t.Parallel()
		e := mk(t, Config{Visibility: 30 * time.Second})
		e.sendBodies(e.q, "m")
		m := e.receiveOne(e.q, queue.ReceiveOptions{})
		e.deleteAll(e.q, m.Handle)
		e.deleteAll(e.q, m.Handle)
		e.deleteAll(e.q, m.Handle, m.Handle)
		e.requireDepth(e.q, queue.Depth{})
	})

	t.Run("LatestHandleAfterTimeout", func(t *testing.T) {
		t.Parallel()
		// The handle stays the latest until the message is received again,
		// even once the message is visible.
		e := mk(t, Config{Visibility: 2 * time.Second})
		e.sendBodies(e.q, "m")
		m := e.receiveOne(e.q, queue.ReceiveOptions{})
		e.advance(2 * time.Second)
		e.requireDepth(e.q, queue.Depth{Visible: 1})
		e.deleteAll(e.q, m.Handle)
		e.requireDepth(e.q, queue.Depth{})
		e.requireEmpty(e.q, 0)
	})

	t.Run("BatchPerEntry", func(t *testing.T) {
		t.Parallel()
		e := mk(t, Config{Visibility: 30 * time.Second})
		e.skipFor(OldHandlesAct)
		e.sendBodies(e.q, "a", "b", "c")
		got := byBody(t, e.receiveN(e.q, 3, queue.ReceiveOptions{}))
		a, b, c := got["a"], got["b"], got["c"]
		require.NoError(t, e.changeOne(e.q, a.Handle, 0))
		a2 := e.receiveOne(e.q, queue.ReceiveOptions{})

		errs, err := e.q.Delete(e.ctx, a.Handle, "", "not-a-receipt-handle", b.Handle, c.Handle)
		require.NoError(t, err)
		require.Len(t, errs, 5)
		require.NoError(t, errs[0], "stale handle: succeeds without deleting")
		requireCode(t, errcode.InvalidArgument, errs[1], "empty handle")
		requireCode(t, errcode.InvalidArgument, errs[2], "malformed handle")
		require.NoError(t, errs[3])
		require.NoError(t, errs[4])
		e.requireDepth(e.q, queue.Depth{InFlight: 1})

		e.deleteAll(e.q, a2.Handle)
		e.requireDepth(e.q, queue.Depth{})
	})
}

// testDeadLetter: with MaxReceives 2, a message received twice moves to
// the dead-letter queue at the next receive, which does not return it; it
// keeps its id, body, attributes, send time and receive count.
func testDeadLetter(t *testing.T, mk func(*testing.T, Config) *env) {
	e := mk(t, Config{Visibility: 2 * time.Second, MaxReceives: 2})
	e.send(e.q,
		queue.SendEntry{Body: []byte("poison"), Attributes: map[string]string{"type": "bad", "n": "1"}},
		queue.SendEntry{Body: []byte("good")},
	)
	first := byBody(t, e.receiveN(e.q, 2, queue.ReceiveOptions{}))
	e.advance(2 * time.Second)
	second := byBody(t, e.receiveN(e.q, 2, queue.ReceiveOptions{}))
	for _, m := range second {
		require.Equal(t, 2, m.ReceiveCount)
	}
	// "good" is deleted on its last allowed receive and never dead-letters.
	e.deleteAll(e.q, second["good"].Handle)
	e.advance(2 * time.Second)

	e.requireEmpty(e.q, emptyWait)
	e.requireDepth(e.q, queue.Depth{})
	e.requireDepth(e.h.DLQ, queue.Depth{Visible: 1})

	d := e.receiveOne(e.h.DLQ, queue.ReceiveOptions{})
	requireSameMessage(t, first["poison"], d)
	require.Equal(t, 3, d.ReceiveCount, "the receive count carries over to the dead-letter queue")
	e.requireEmpty(e.h.DLQ, 0)
	e.deleteAll(e.h.DLQ, d.Handle)
	e.requireDepth(e.h.DLQ, queue.Depth{})
	e.requireDepth(e.q, queue.Depth{})
}

// testDepth: counts by state after a known sequence.
func testDepth(t *testing.T, mk func(*testing.T, Config) *env) {
	e := mk(t, Config{Visibility: 30 * time.Second})
	e.requireDepth(e.q, queue.Depth{})
	e.sendBodies(e.q, "1", "2", "3", "4", "5")
	e.send(e.q,
		queue.SendEntry{Body: []byte("d1"), Delay: time.Minute},
		queue.SendEntry{Body: []byte("d2"), Delay: queue.MaxDelay},
	)
	e.requireDepth(e.q, queue.Depth{Visible: 5, Delayed: 2})
	msgs := e.receiveN(e.q, 2, queue.ReceiveOptions{})
	e.requireDepth(e.q, queue.Depth{Visible: 3, InFlight: 2, Delayed: 2})
	e.deleteAll(e.q, msgs[0].Handle)
	e.requireDepth(e.q, queue.Depth{Visible: 3, InFlight: 1, Delayed: 2})
	require.NoError(t, e.changeOne(e.q, msgs[1].Handle, 0))
	e.requireDepth(e.q, queue.Depth{Visible: 4, Delayed: 2})
}

func testLongPoll(t *testing.T, mk func(*testing.T, Config) *env) {
	t.Run("ReturnsWhenMessageArrives", func(t *testing.T) {
		t.Parallel()
		e := mk(t, Config{Visibility: 30 * time.Second})
		const wait = 10 * time.Second
		type result struct {
			msgs []*queue.Message
			err  error
			at   time.Time
		}
		done := make(chan result, 1)
		go func() {
			msgs, err := e.q.Receive(e.ctx, queue.ReceiveOptions{Max: queue.MaxBatch, Wait: wait})
			done <- result{msgs, err, time.Now()}
		}()
		// The message must arrive while the receive waits. The port has no
		// signal for "now waiting", so the receive gets a head start; that
		// delay is part of what is tested, not a wait for a side effect.
		select {
		case r := <-done:
			t.Fatalf("receive returned before anything was sent: %v, %v", r.msgs, r.err)
		case <-time.After(300 * time.Millisecond):
		}
		sent := time.Now()
		e.sendBodies(e.q, "wake up")
		r := <-done
		require.NoError(t, r.err)
		require.Equal(t, []string{"wake up"}, bodiesOf(r.msgs))
		latency := r.at.Sub(sent)
		t.Logf("long-poll latency after send: %s", latency)
		require.Less(t, latency, 2*time.Second, "a waiting receive returns soon after a send, long before Wait")
	})

	t.Run("EmptyWaitsFull", func(t *testing.T) {
		t.Parallel()
		e := mk(t, Config{Visibility: 30 * time.Second})
		start := time.Now()
		msgs, err := e.q.Receive(e.ctx, queue.ReceiveOptions{Wait: time.Second})
		took := time.Since(start)
		require.NoError(t, err)
		require.Empty(t, msgs)
		require.GreaterOrEqual(t, took, 900*time.Millisecond, "an empty long poll waits about Wait")
		require.Less(t, took, 4*time.Second)
	})

	t.Run("ContextEndsDuringWait", func(t *testing.T) {
		t.Parallel()
		e := mk(t, Config{Visibility: 30 * time.Second})
		ctx, cancel := context.WithTimeout(e.ctx, 200*time.Millisecond)
		defer cancel()
		start := time.Now()
		msgs, err := e.q.Receive(ctx, queue.ReceiveOptions{Wait: 10 * time.Second})
		took := time.Since(start)
		require.NoError(t, err, "a receive whose context ends while it waits returns no error")
		require.Empty(t, msgs)
		require.Less(t, took, 3*time.Second, "and returns promptly")

		// A message sent afterwards is there for the next receive.
		e.sendBodies(e.q, "after")
		m := e.receiveOne(e.q, queue.ReceiveOptions{})
		require.Equal(t, 1, m.ReceiveCount)
	})

	t.Run("CancelRacingSendLosesNothing", func(t *testing.T) {
		t.Parallel()
		e := mk(t, Config{Visibility: 2 * time.Second})
		const rounds = 8
		delivered := map[string]int{}
		for i := range rounds {
			ctx, cancel := context.WithCancel(e.ctx)
			done := make(chan []*queue.Message, 1)
			go func() {
				msgs, err := e.q.Receive(ctx, queue.ReceiveOptions{Max: queue.MaxBatch, Wait: 5 * time.Second})
				if err != nil {
					// Canceled is allowed when the context ended before the
					// receive began; no other error is.
					if errcode.Of(err) != errcode.Canceled {
						t.Errorf("round %d: receive: %v", i, err)
					}
				}
				done <- msgs
			}()
			e.sendBodies(e.q, fmt.Sprintf("round %d", i))
			cancel()
			for _, m := range <-done {
				delivered[string(m.Body)]++
				e.deleteAll(e.q, m.Handle)
			}
		}
		// Whatever a canceled receive may have claimed without returning
		// becomes visible again after the visibility timeout.
		e.advance(2 * time.Second)
		msgs, err := e.q.Receive(e.ctx, queue.ReceiveOptions{Max: queue.MaxBatch, Wait: expectWait})
		require.NoError(t, err)
		for len(msgs) > 0 {
			for _, m := range msgs {
				delivered[string(m.Body)]++
				e.deleteAll(e.q, m.Handle)
			}
			msgs, err = e.q.Receive(e.ctx, queue.ReceiveOptions{Max: queue.MaxBatch, Wait: emptyWait})
			require.NoError(t, err)
		}
		for i := range rounds {
			require.Positive(t, delivered[fmt.Sprintf("round %d", i)], "round %d's message was lost", i)
		}
	})
}

// testConcurrent: several receivers (on separate handles when the harness
// can open them) share N messages; every message is delivered and none
// lost. Duplicates are allowed by the contract and logged.
func testConcurrent(t *testing.T, mk func(*testing.T, Config) *env) {
	e := mk(t, Config{Visibility: 30 * time.Second})
	e.skipFor(ConcurrentCallsRace)
	const n, receivers = 120, 4
	entries := make([]queue.SendEntry, n)
	for i := range entries {
		entries[i] = queue.SendEntry{Body: fmt.Appendf(nil, "job %03d", i)}
	}
	ids := e.send(e.q, entries...)

	var (
		mu         sync.Mutex
		deliveries = map[string]int{}
	)
	distinct := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(deliveries)
	}
	ctx, cancel := context.WithTimeout(e.ctx, 60*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for r := range receivers {
		q := e.q
		if e.h.Open != nil && r%2 == 1 {
			var err error
			q, err = e.h.Open(ctx, e.q.Name())
			require.NoError(t, err)
			defer q.Close()
		}
		wg.Go(func() {
			for distinct() < n && ctx.Err() == nil {
				msgs, err := q.Receive(ctx, queue.ReceiveOptions{Max: queue.MaxBatch, Wait: time.Second})
				if err != nil {
					t.Errorf("receiver %d: receive: %v", r, err)
					return
				}
				handles := make([]string, len(msgs))
				mu.Lock()
				for i, m := range msgs {
					deliveries[m.ID]++
					handles[i] = m.Handle
				}
				mu.Unlock()
				if len(handles) == 0 {
					continue
				}
				errs, err := q.Delete(ctx, handles...)
				if err != nil {
					t.Errorf("receiver %d: delete: %v", r, err)
					return
				}
				for _, err := range errs {
					if err != nil {
						t.Errorf("receiver %d: delete entry: %v", r, err)
					}
				}
			}
		})
	}
	wg.Wait()
	require.NoError(t, ctx.Err(), "receivers did not get every message in time")

	dups := 0
	for _, id := range ids {
		c := deliveries[id]
		require.Positive(t, c, "message %s lost", id)
		dups += c - 1
	}
	require.Len(t, deliveries, n, "unknown ids delivered")
	t.Logf("%d messages, %d receivers: %d duplicate deliveries", n, receivers, dups)
	e.requireDepth(e.q, queue.Depth{})
	e.requireEmpty(e.q, 0)
}

func testValidation(t *testing.T, mk func(*testing.T, Config) *env) {
	e := mk(t, Config{Visibility: 30 * time.Second})
	ok := []byte("ok")
	tooMany := map[string]string{}
	for i := range queue.MaxAttributes + 1 {
		tooMany[fmt.Sprintf("a%d", i)] = "v"
	}
	for _, c := range []struct {
		name  string
		entry queue.SendEntry
	}{
		{"EmptyBody", queue.SendEntry{Body: []byte{}}},
		{"NilBody", queue.SendEntry{}},
		{"InvalidUTF8", queue.SendEntry{Body: []byte("ok \xff\xfe")}},
		{"TruncatedUTF8", queue.SendEntry{Body: []byte("ok \xe2\x82")}},
		{"NegativeDelay", queue.SendEntry{Body: ok, Delay: -time.Second}},
		{"DelayOverMax", queue.SendEntry{Body: ok, Delay: queue.MaxDelay + time.Second}},
		{"TooManyAttributes", queue.SendEntry{Body: ok, Attributes: tooMany}},
		{"AttrEmptyName", queue.SendEntry{Body: ok, Attributes: map[string]string{"": "v"}}},
		{"AttrLeadingPeriod", queue.SendEntry{Body: ok, Attributes: map[string]string{".a": "v"}}},
		{"AttrTrailingPeriod", queue.SendEntry{Body: ok, Attributes: map[string]string{"a.": "v"}}},
		{"AttrDoublePeriod", queue.SendEntry{Body: ok, Attributes: map[string]string{"a..b": "v"}}},
		{"AttrAWSPrefix", queue.SendEntry{Body: ok, Attributes: map[string]string{"AWS.x": "v"}}},
		{"AttrAmazonPrefix", queue.SendEntry{Body: ok, Attributes: map[string]string{"Amazon.x": "v"}}},
		{"AttrSpace", queue.SendEntry{Body: ok, Attributes: map[string]string{"a b": "v"}}},
		{"AttrNonASCII", queue.SendEntry{Body: ok, Attributes: map[string]string{"ä": "v"}}},
		{"AttrNameTooLong", queue.SendEntry{Body: ok, Attributes: map[string]string{strings.Repeat("a", 257): "v"}}},
		{"AttrEmptyValue", queue.SendEntry{Body: ok, Attributes: map[string]string{"a": ""}}},
		{"AttrInvalidUTF8Value", queue.SendEntry{Body: ok, Attributes: map[string]string{"a": "\xff"}}},
	} {
		res, err := e.q.Send(e.ctx, c.entry)
		require.NoError(t, err, c.name)
		require.Len(t, res, 1, c.name)
		requireCode(t, errcode.InvalidArgument, res[0].Err, c.name)
	}

	// The edges of what is allowed.
	maxAttrs := map[string]string{strings.Repeat("n", 256): "v", "a.b": "v", "a-b_C9": "v", "AWSx": "v"}
	for i := len(maxAttrs); i < queue.MaxAttributes; i++ {
		maxAttrs[fmt.Sprintf("k%d", i)] = "v"
	}
	e.send(e.q,
		queue.SendEntry{Body: []byte("edges"), Attributes: maxAttrs},
		queue.SendEntry{Body: []byte("max delay"), Delay: queue.MaxDelay},
	)
	e.requireDepth(e.q, queue.Depth{Visible: 1, Delayed: 1})

	for _, c := range []struct {
		name string
		opts queue.ReceiveOptions
	}{
		{"MaxNegative", queue.ReceiveOptions{Max: -1}},
		{"MaxOverBatch", queue.ReceiveOptions{Max: queue.MaxBatch + 1}},
		{"WaitNegative", queue.ReceiveOptions{Wait: -time.Second}},
		{"WaitOverMax", queue.ReceiveOptions{Wait: queue.MaxWait + time.Second}},
		{"VisibilityNegative", queue.ReceiveOptions{Visibility: -time.Second}},
		{"VisibilityOverMax", queue.ReceiveOptions{Visibility: queue.MaxVisibility + time.Second}},
	} {
		msgs, err := e.q.Receive(e.ctx, c.opts)
		requireCode(t, errcode.InvalidArgument, err, c.name)
		require.Empty(t, msgs, c.name)
	}
	e.requireDepth(e.q, queue.Depth{Visible: 1, Delayed: 1})

	// Max 0 means 1; the longest Wait and Visibility are allowed.
	e.sendBodies(e.q, "second")
	msgs, err := e.q.Receive(e.ctx, queue.ReceiveOptions{Max: 0, Wait: queue.MaxWait, Visibility: queue.MaxVisibility})
	require.NoError(t, err)
	require.Len(t, msgs, 1, "Max 0 receives one message")
	e.requireDepth(e.q, queue.Depth{Visible: 1, InFlight: 1, Delayed: 1})
	got := byBody(t, append(msgs, e.receiveOne(e.q, queue.ReceiveOptions{})))
	require.Equal(t, maxAttrs, got["edges"].Attributes)

	errs, err := e.q.ChangeVisibility(e.ctx,
		queue.VisibilityChange{Handle: msgs[0].Handle, Timeout: -time.Second},
		queue.VisibilityChange{Handle: msgs[0].Handle, Timeout: queue.MaxVisibility + time.Second},
	)
	require.NoError(t, err)
	requireCode(t, errcode.InvalidArgument, errs[0], "negative timeout")
	requireCode(t, errcode.InvalidArgument, errs[1], "timeout over MaxVisibility")
}

// testCanceledContext: a context that has already ended fails every call
// with errcode.Canceled, and changes nothing.
func testCanceledContext(t *testing.T, mk func(*testing.T, Config) *env) {
	e := mk(t, Config{Visibility: 30 * time.Second})
	e.sendBodies(e.q, "m")
	m := e.receiveOne(e.q, queue.ReceiveOptions{})
	e.sendBodies(e.q, "visible")

	ctx, cancel := context.WithCancel(e.ctx)
	cancel()
	_, err := e.q.Send(ctx, queue.SendEntry{Body: []byte("never")})
	requireCode(t, errcode.Canceled, err, "send")
	_, err = e.q.Receive(ctx, queue.ReceiveOptions{})
	requireCode(t, errcode.Canceled, err, "receive")
	_, err = e.q.Receive(ctx, queue.ReceiveOptions{Wait: time.Second})
	requireCode(t, errcode.Canceled, err, "long-poll receive begun with an ended context")
	_, err = e.q.ChangeVisibility(ctx, queue.VisibilityChange{Handle: m.Handle})
	requireCode(t, errcode.Canceled, err, "change visibility")
	_, err = e.q.Delete(ctx, m.Handle)
	requireCode(t, errcode.Canceled, err, "delete")
	_, err = e.q.Depth(ctx)
	requireCode(t, errcode.Canceled, err, "depth")

	e.requireDepth(e.q, queue.Depth{Visible: 1, InFlight: 1})
	v := e.receiveOne(e.q, queue.ReceiveOptions{Max: queue.MaxBatch})
	require.Equal(t, "visible", string(v.Body))
	require.Equal(t, 1, v.ReceiveCount, "the canceled receives claimed nothing")
	e.deleteAll(e.q, m.Handle, v.Handle)
	e.requireDepth(e.q, queue.Depth{})
}

// testClosed: after Close every call fails with errcode.Closed, in Queue
// and in the Driver itself; Close is safe twice; closing one handle leaves
// other handles on the same queue working; Close ends a waiting receive.
func testClosed(t *testing.T, mk func(*testing.T, Config) *env) {
	t.Run("UseAfterClose", func(t *testing.T) {
		t.Parallel()
		e := mk(t, Config{Visibility: 30 * time.Second})
		var other *queue.Queue
		if e.h.Open != nil {
			var err error
			other, err = e.h.Open(e.ctx, e.q.Name())
			require.NoError(t, err)
			defer other.Close()
		}
		e.sendBodies(e.q, "m")
		m := e.receiveOne(e.q, queue.ReceiveOptions{})
		require.NoError(t, e.q.Close())
		require.NoError(t, e.q.Close(), "Close twice")

		_, err := e.q.Send(e.ctx, queue.SendEntry{Body: []byte("x")})
		requireCode(t, errcode.Closed, err, "send")
		_, err = e.q.Receive(e.ctx, queue.ReceiveOptions{})
		requireCode(t, errcode.Closed, err, "receive")
		_, err = e.q.ChangeVisibility(e.ctx, queue.VisibilityChange{Handle: m.Handle})
		requireCode(t, errcode.Closed, err, "change visibility")
		_, err = e.q.Delete(e.ctx, m.Handle)
		requireCode(t, errcode.Closed, err, "delete")
		_, err = e.q.Depth(e.ctx)
		requireCode(t, errcode.Closed, err, "depth")

		d := e.q.Driver()
		_, err = d.Send(e.ctx, []queue.SendEntry{{Body: []byte("x")}})
		requireCode(t, errcode.Closed, err, "driver send")
		_, err = d.Receive(e.ctx, queue.ReceiveOptions{Max: 1})
		requireCode(t, errcode.Closed, err, "driver receive")
		_, err = d.ChangeVisibility(e.ctx, []queue.VisibilityChange{{Handle: m.Handle}})
		requireCode(t, errcode.Closed, err, "driver change visibility")
		_, err = d.Delete(e.ctx, []string{m.Handle})
		requireCode(t, errcode.Closed, err, "driver delete")
		_, err = d.Depth(e.ctx)
		requireCode(t, errcode.Closed, err, "driver depth")

		if other != nil {
			e.requireDepth(other, queue.Depth{InFlight: 1})
			e.deleteAll(other, m.Handle)
			e.requireDepth(other, queue.Depth{})
		}
	})

	t.Run("CloseEndsWaitingReceive", func(t *testing.T) {
		t.Parallel()
		e := mk(t, Config{Visibility: 30 * time.Second})
		type result struct {
			msgs []*queue.Message
			err  error
		}
		done := make(chan result, 1)
		go func() {
			msgs, err := e.q.Receive(e.ctx, queue.ReceiveOptions{Wait: 10 * time.Second})
			done <- result{msgs, err}
		}()
		// Give the receive a head start into its wait (see LongPoll).
		select {
		case r := <-done:
			t.Fatalf("receive returned before Close: %v, %v", r.msgs, r.err)
		case <-time.After(300 * time.Millisecond):
		}
		closed := time.Now()
		require.NoError(t, e.q.Close())
		select {
		case r := <-done:
			require.Empty(t, r.msgs)
			if r.err != nil {
				requireCode(t, errcode.Closed, r.err)
			}
			t.Logf("a waiting receive returned %s after Close", time.Since(closed))
		case <-time.After(3 * time.Second):
			t.Fatal("a waiting receive did not return after Close")
		}
	})
}

// testNotFound: opening a queue that does not exist is errcode.NotFound.
func testNotFound(t *testing.T, mk func(*testing.T, Config) *env) {
	e := mk(t, Config{Visibility: 30 * time.Second})
	if e.h.Open == nil {
		t.Skip("the harness cannot open queues by name")
	}
	q, err := e.h.Open(e.ctx, Name(t)+"-missing")
	requireCode(t, errcode.NotFound, err)
	require.Nil(t, q)
}
