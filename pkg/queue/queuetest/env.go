package queuetest

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/stretchr/testify/require"

	"github.com/jobfleet/jobfleet/pkg/errcode"
	"github.com/jobfleet/jobfleet/pkg/queue"
)

const (
	// slack is added whenever a deadline must have passed, so adapters on
	// real time are not raced against their own timers.
	slack = 250 * time.Millisecond
	// expectWait is the long-poll wait of a receive that expects messages:
	// a short poll (Wait 0) may miss messages on SQS.
	expectWait = 2 * time.Second
	// emptyWait is the long-poll wait of a receive that expects nothing and
	// where a short poll could miss a message that is there.
	emptyWait = time.Second
	// receiveAttempts bounds the receives receiveN makes that come back empty.
	receiveAttempts = 3
)

// env is one test's queue and the helpers that act on it.
type env struct {
	t   *testing.T
	h   Harness
	q   *queue.Queue
	ctx context.Context
}

// skipFor skips the case if the backend has one of quirks, saying what
// SQS does instead.
func (e *env) skipFor(quirks ...Quirk) {
	e.t.Helper()
	for _, q := range quirks {
		if slices.Contains(e.h.Quirks, q) {
			e.t.Skipf("backend quirk %s; this case pins the SQS behaviour: %s", q, quirkSQS[q])
		}
	}
}

// advance lets d pass and then slack, so that a deadline d from now has
// passed.
func (e *env) advance(d time.Duration) {
	e.h.Advance(d + slack)
}

// sendBodies sends one message per body and returns their ids.
func (e *env) sendBodies(q *queue.Queue, bodies ...string) []string {
	e.t.Helper()
	entries := make([]queue.SendEntry, len(bodies))
	for i, b := range bodies {
		entries[i] = queue.SendEntry{Body: []byte(b)}
	}
	return e.send(q, entries...)
}

// send sends entries, requires every one to succeed and returns their ids.
func (e *env) send(q *queue.Queue, entries ...queue.SendEntry) []string {
	e.t.Helper()
	res, err := q.Send(e.ctx, entries...)
	require.NoError(e.t, err)
	require.Len(e.t, res, len(entries))
	ids := make([]string, len(res))
	for i, r := range res {
		require.NoError(e.t, r.Err, "entry %d", i)
		require.NotEmpty(e.t, r.ID, "entry %d", i)
		ids[i] = r.ID
	}
	return ids
}

// receiveN receives exactly n messages, in as many calls as it takes.
func (e *env) receiveN(q *queue.Queue, n int, opts queue.ReceiveOptions) []*queue.Message {
	e.t.Helper()
	var out []*queue.Message
	for empty := 0; len(out) < n && empty < receiveAttempts; {
		o := opts
		o.Max = min(n-len(out), queue.MaxBatch)
		o.Wait = expectWait
		msgs, err := q.Receive(e.ctx, o)
		require.NoError(e.t, err)
		require.LessOrEqual(e.t, len(msgs), o.Max, "receive returned more than Max")
		if len(msgs) == 0 {
			empty++
		}
		out = append(out, msgs...)
	}
	require.Len(e.t, out, n, "messages received")
	return out
}

// receiveOne receives exactly one message.
func (e *env) receiveOne(q *queue.Queue, opts queue.ReceiveOptions) *queue.Message {
	e.t.Helper()
	return e.receiveN(q, 1, opts)[0]
}

// requireEmpty requires a receive with wait to return nothing.
func (e *env) requireEmpty(q *queue.Queue, wait time.Duration) {
	e.t.Helper()
	msgs, err := q.Receive(e.ctx, queue.ReceiveOptions{Max: queue.MaxBatch, Wait: wait})
	require.NoError(e.t, err)
	require.Empty(e.t, msgs, "receive returned messages: %v", bodiesOf(msgs))
}

// requireDepth requires q's depth to be want: at once on a fake clock,
// within a few seconds on real time (where a backend's counts may lag).
func (e *env) requireDepth(q *queue.Queue, want queue.Depth) {
	e.t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		got, err := q.Depth(e.ctx)
		require.NoError(e.t, err)
		if got == want {
			return
		}
		if e.h.FakeTime || time.Now().After(deadline) {
			require.Equal(e.t, want, got, "depth of %s", q.Name())
		}
		e.h.Advance(100 * time.Millisecond)
	}
}

// deleteAll deletes by handle and requires every entry to succeed.
func (e *env) deleteAll(q *queue.Queue, handles ...string) {
	e.t.Helper()
	errs, err := q.Delete(e.ctx, handles...)
	require.NoError(e.t, err)
	require.Len(e.t, errs, len(handles))
	for i, err := range errs {
		require.NoError(e.t, err, "delete %d", i)
	}
}

// changeOne changes one message's visibility and returns the entry's error.
func (e *env) changeOne(q *queue.Queue, handle string, timeout time.Duration) error {
	e.t.Helper()
	errs, err := q.ChangeVisibility(e.ctx, queue.VisibilityChange{Handle: handle, Timeout: timeout})
	require.NoError(e.t, err)
	require.Len(e.t, errs, 1)
	return errs[0]
}

// requireCode requires err to carry code.
func requireCode(t *testing.T, code errcode.Code, err error, msgAndArgs ...any) {
	t.Helper()
	require.Error(t, err, msgAndArgs...)
	require.Truef(t, errcode.Of(err) == code, "want code %q, got %q: %v %v", code, errcode.Of(err), err, msgAndArgs)
}

// requireSameMessage requires got to be a delivery of the message want
// (same id, body, attributes and send time).
func requireSameMessage(t *testing.T, want, got *queue.Message) {
	t.Helper()
	if diff := cmp.Diff(want, got,
		cmpopts.IgnoreFields(queue.Message{}, "Handle", "ReceiveCount"),
		cmpopts.EquateEmpty()); diff != "" {
		t.Fatalf("redelivered message differs (-first +again):\n%s", diff)
	}
}

func bodiesOf(msgs []*queue.Message) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = string(m.Body)
	}
	return out
}

// byBody indexes messages by body and requires bodies to be distinct.
func byBody(t *testing.T, msgs []*queue.Message) map[string]*queue.Message {
	t.Helper()
	out := make(map[string]*queue.Message, len(msgs))
	for _, m := range msgs {
		_, dup := out[string(m.Body)]
		require.False(t, dup, "body %q delivered twice", m.Body)
		out[string(m.Body)] = m
	}
	return out
}

// body returns a valid UTF-8 body of exactly n bytes that mixes one- to
// four-byte characters, so that sizes count bytes, not characters.
func body(n int) []byte {
	const unit = "aü€🚀" // 1+2+3+4 bytes
	b := strings.Repeat(unit, n/len(unit)) + strings.Repeat("z", n%len(unit))
	return []byte(b)
}
