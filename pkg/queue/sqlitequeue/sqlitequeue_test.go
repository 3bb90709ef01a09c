package sqlitequeue_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobfleet/jobfleet/pkg/clock"
	"github.com/jobfleet/jobfleet/pkg/errcode"
	"github.com/jobfleet/jobfleet/pkg/queue"
	"github.com/jobfleet/jobfleet/pkg/queue/sqlitequeue"
)

// bundle is one test's database and queue.
type bundle struct {
	path string
	db   *sqlitequeue.DB
	q    *queue.Queue
}

// setup opens a fresh database on a fake clock (nil clk: the real clock)
// with one queue "q" of the given config.
func setup(t *testing.T, clk *clock.Fake, cfg sqlitequeue.Config) *bundle {
	t.Helper()
	b := &bundle{path: filepath.Join(t.TempDir(), "queue.db")}
	b.db = openDB(t, b.path, clk)
	require.NoError(t, b.db.CreateQueue(t.Context(), "q", cfg))
	b.q = openQueue(t, b.db, "q")
	return b
}

func openDB(t *testing.T, path string, clk *clock.Fake) *sqlitequeue.DB {
	t.Helper()
	opts := &sqlitequeue.Options{}
	if clk != nil {
		opts.Clock = clk
	}
	db, err := sqlitequeue.OpenDB(t.Context(), path, opts)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, db.Close()) })
	return db
}

func openQueue(t *testing.T, db *sqlitequeue.DB, name string) *queue.Queue {
	t.Helper()
	q, err := db.Open(t.Context(), name)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, q.Close()) })
	return q
}

func sendN(t *testing.T, q *queue.Queue, n int) []string {
	t.Helper()
	entries := make([]queue.SendEntry, n)
	for i := range entries {
		entries[i] = queue.SendEntry{Body: fmt.Appendf(nil, "message %d", i)}
	}
	res, err := q.Send(t.Context(), entries...)
	require.NoError(t, err)
	ids := make([]string, n)
	for i, r := range res {
		require.NoError(t, r.Err)
		ids[i] = r.ID
	}
	return ids
}

func requireCode(t *testing.T, code errcode.Code, err error) {
	t.Helper()
	require.Error(t, err)
	require.Truef(t, errcode.Of(err) == code, "want %q, got %q: %v", code, errcode.Of(err), err)
}

// waitHook returns a channel that receives each time a receive on db
// starts waiting.
func waitHook(db *sqlitequeue.DB) <-chan string {
	ch := make(chan string, 100)
	sqlitequeue.SetWaitHook(db, func(q string) {
		select {
		case ch <- q:
		default:
		}
	})
	return ch
}

// drain empties a waitHook channel of the calls of receives that have
// returned.
func drain(hook <-chan string) {
	for {
		select {
		case <-hook:
		default:
			return
		}
	}
}

func TestCreateQueue(t *testing.T) {
	t.Parallel()
	clk := clock.NewFake(epoch)
	db := openDB(t, filepath.Join(t.TempDir(), "queue.db"), clk)
	ctx := t.Context()
	require.NoError(t, db.CreateQueue(ctx, "dlq", sqlitequeue.Config{}))

	for _, c := range []struct {
		name  string
		queue string
		cfg   sqlitequeue.Config
		code  errcode.Code
	}{
		{"EmptyName", "", sqlitequeue.Config{}, errcode.InvalidArgument},
		{"NameWithDot", "a.b", sqlitequeue.Config{}, errcode.InvalidArgument},
		{"NameWithSpace", "a b", sqlitequeue.Config{}, errcode.InvalidArgument},
		{"NameTooLong", strings.Repeat("a", 81), sqlitequeue.Config{}, errcode.InvalidArgument},
		{"NegativeVisibility", "q", sqlitequeue.Config{Visibility: -time.Second}, errcode.InvalidArgument},
		{"VisibilityOverMax", "q", sqlitequeue.Config{Visibility: queue.MaxVisibility + time.Second}, errcode.InvalidArgument},
		{"MaxReceivesWithoutDLQ", "q", sqlitequeue.Config{MaxReceives: 3}, errcode.InvalidArgument},
		{"DLQWithoutMaxReceives", "q", sqlitequeue.Config{DeadLetter: "dlq"}, errcode.InvalidArgument},
		{"MaxReceivesOverMax", "q", sqlitequeue.Config{DeadLetter: "dlq", MaxReceives: sqlitequeue.MaxMaxReceives + 1}, errcode.InvalidArgument},
		{"OwnDLQ", "q", sqlitequeue.Config{DeadLetter: "q", MaxReceives: 1}, errcode.InvalidArgument},
		{"MissingDLQ", "q", sqlitequeue.Config{DeadLetter: "nope", MaxReceives: 1}, errcode.NotFound},
	} {
		t.Run(c.name, func(t *testing.T) {
			requireCode(t, c.code, db.CreateQueue(ctx, c.queue, c.cfg))
		})
	}
	_, err := db.Open(ctx, "q")
	requireCode(t, errcode.NotFound, err)

	// Idempotent; a second create with another configuration updates it
	// for handles opened afterwards.
	require.NoError(t, db.CreateQueue(ctx, strings.Repeat("a", 80), sqlitequeue.Config{}))
	long := sqlitequeue.Config{Visibility: time.Hour, DeadLetter: "dlq", MaxReceives: 5}
	require.NoError(t, db.CreateQueue(ctx, "q", long))
	require.NoError(t, db.CreateQueue(ctx, "q", long))
	before := openQueue(t, db, "q")
	require.NoError(t, db.CreateQueue(ctx, "q", sqlitequeue.Config{Visibility: 1500 * time.Millisecond}))
	after := openQueue(t, db, "q")
	sendN(t, before, 2)
	for _, q := range []*queue.Queue{before, after} {
		msgs, err := q.Receive(ctx, queue.ReceiveOptions{})
		require.NoError(t, err)
		require.Len(t, msgs, 1)
	}
	clk.Advance(1500 * time.Millisecond) // 1.5 s was rounded up to 2 s
	requireDepth(t, after, queue.Depth{InFlight: 2})
	clk.Advance(500 * time.Millisecond)
	requireDepth(t, after, queue.Depth{Visible: 1, InFlight: 1})
	clk.Advance(time.Hour)
	requireDepth(t, after, queue.Depth{Visible: 2})
}

func nil2err(errs []error, err error) error {
	if err != nil {
		return err
	}
	return errs[0]
}

type received struct {
	msgs []*queue.Message
	err  error
	at   time.Time // when Receive returned
}

// receiveAsync starts a receive in a goroutine; the result arrives on the
// returned channel.
func receiveAsync(ctx context.Context, q *queue.Queue, opts queue.ReceiveOptions) <-chan received {
	ch := make(chan received, 1)
	go func() {
		msgs, err := q.Receive(ctx, opts)
		ch <- received{msgs, err, time.Now()}
	}()
	return ch
}

// wait returns the result of a receiveAsync.
func wait(t *testing.T, ch <-chan received) received {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(30 * time.Second):
		t.Fatal("receive did not return")
		return received{}
	}
}

func requireDepth(t *testing.T, q *queue.Queue, want queue.Depth) {
	t.Helper()
	got, err := q.Depth(t.Context())
	require.NoError(t, err)
	require.Equal(t, want, got)
}

func TestClosedDB(t *testing.T) {
	t.Parallel()
	b := setup(t, clock.NewFake(epoch), sqlitequeue.Config{})
	ctx := t.Context()
	sendN(t, b.q, 1)
	hook := waitHook(b.db)
	msgs, err := b.q.Receive(ctx, queue.ReceiveOptions{})
	require.NoError(t, err)
	require.Len(t, msgs, 1)
	done := receiveAsync(ctx, b.q, queue.ReceiveOptions{Wait: 10 * time.Second})
	<-hook

	require.NoError(t, b.db.Close())
	r := wait(t, done)
	require.Empty(t, r.msgs)
	requireCode(t, errcode.Closed, r.err)
	require.NoError(t, b.db.Close(), "Close twice")
	requireCode(t, errcode.Closed, b.db.CreateQueue(ctx, "x", sqlitequeue.Config{}))
	_, err = b.db.Open(ctx, "q")
	requireCode(t, errcode.Closed, err)
	_, err = b.q.Send(ctx, queue.SendEntry{Body: []byte("x")})
	requireCode(t, errcode.Closed, err)
	_, err = b.q.Depth(ctx)
	requireCode(t, errcode.Closed, err)
}

// TestSendWakesWaiter: with polling effectively off, only the in-process
// wake-up can end the wait, and it does so at once.
func TestSendWakesWaiter(t *testing.T) {
	t.Parallel()
	b := setup(t, clock.NewFake(epoch), sqlitequeue.Config{})
	sqlitequeue.SetPoll(b.db, time.Hour, time.Hour)
	hook := waitHook(b.db)
	const rounds = 10
	var lat []time.Duration
	for i := range rounds {
		done := receiveAsync(t.Context(), b.q, queue.ReceiveOptions{Wait: 5 * time.Second})
		<-hook
		sendN(t, b.q, 1)
		sent := time.Now()
		r := wait(t, done)
		require.NoError(t, r.err)
		require.Len(t, r.msgs, 1, "round %d", i)
		require.Equal(t, 1, r.msgs[0].ReceiveCount)
		lat = append(lat, r.at.Sub(sent))
		require.Less(t, lat[i], 2*time.Second, "round %d: the receive was not woken by the send", i)
	}
	slices.Sort(lat)
	t.Logf("send → waiting receive returns, same process: p50 %s, max %s", lat[rounds/2], lat[rounds-1])
}

// TestChangeVisibilityZeroWakesWaiter: a message made visible by
// ChangeVisibility wakes a waiting receive too.
func TestChangeVisibilityZeroWakesWaiter(t *testing.T) {
	t.Parallel()
	b := setup(t, clock.NewFake(epoch), sqlitequeue.Config{})
	sqlitequeue.SetPoll(b.db, time.Hour, time.Hour)
	hook := waitHook(b.db)
	sendN(t, b.q, 1)
	msgs, err := b.q.Receive(t.Context(), queue.ReceiveOptions{})
	require.NoError(t, err)
	require.Len(t, msgs, 1)
	done := receiveAsync(t.Context(), b.q, queue.ReceiveOptions{Wait: 10 * time.Second})
	<-hook
	require.NoError(t, nil2err(b.q.ChangeVisibility(t.Context(), queue.VisibilityChange{Handle: msgs[0].Handle})))
	r := wait(t, done)
	require.NoError(t, r.err)
	require.Len(t, r.msgs, 1)
	require.Equal(t, 2, r.msgs[0].ReceiveCount)
}

// TestPollSeesClockAndOtherHandles: a waiting receive notices what it
// cannot be woken for: a visibility timeout expiring on the injected
// clock, and a send through another DB handle on the same file.
func TestPollSeesClockAndOtherHandles(t *testing.T) {
	t.Parallel()
	clk := clock.NewFake(epoch)
	b := setup(t, clk, sqlitequeue.Config{Visibility: 5 * time.Second})
	other := openQueue(t, openDB(t, b.path, clk), "q")
	hook := waitHook(b.db)
	sendN(t, b.q, 1)
	first, err := b.q.Receive(t.Context(), queue.ReceiveOptions{})
	require.NoError(t, err)
	require.Len(t, first, 1)

	done := receiveAsync(t.Context(), b.q, queue.ReceiveOptions{Wait: 10 * time.Second})
	<-hook
	clk.Advance(5 * time.Second)
	r := wait(t, done)
	require.NoError(t, r.err)
	require.Len(t, r.msgs, 1)
	require.Equal(t, first[0].ID, r.msgs[0].ID)
	require.Equal(t, 2, r.msgs[0].ReceiveCount)

	drain(hook)
	done = receiveAsync(t.Context(), b.q, queue.ReceiveOptions{Wait: 10 * time.Second})
	<-hook
	ids := sendN(t, other, 1)
	r = wait(t, done)
	require.NoError(t, r.err)
	require.Len(t, r.msgs, 1)
	require.Equal(t, ids[0], r.msgs[0].ID)
}

// TestHandles: handles are checked against the queue they are used on.
func TestHandles(t *testing.T) {
	t.Parallel()
	b := setup(t, clock.NewFake(epoch), sqlitequeue.Config{})
	ctx := t.Context()
	require.NoError(t, b.db.CreateQueue(ctx, "other", sqlitequeue.Config{}))
	other := openQueue(t, b.db, "other")
	sendN(t, b.q, 1)
	msgs, err := b.q.Receive(ctx, queue.ReceiveOptions{})
	require.NoError(t, err)
	require.Len(t, msgs, 1)
	h := msgs[0].Handle

	// Another queue's handle: stale there.
	errs, err := other.Delete(ctx, h)
	require.NoError(t, err)
	require.NoError(t, errs[0])
	requireCode(t, errcode.FailedPrecondition, nil2err(other.ChangeVisibility(ctx, queue.VisibilityChange{Handle: h})))
	requireDepth(t, b.q, queue.Depth{InFlight: 1})

	// Malformed: right shape, wrong parts.
	id, token, _ := strings.Cut(h, ".")
	for _, bad := range []string{
		id, id + ".", "." + token, id + "." + token[1:], id + "." + strings.ToUpper(token),
		id + "." + token + "0", "0" + id[1:] + "x." + token, strings.Repeat("Z", 26) + "." + token,
	} {
		errs, err := b.q.Delete(ctx, bad)
		require.NoError(t, err)
		requireCode(t, errcode.InvalidArgument, errs[0])
	}
	// Well-formed but never issued: stale.
	forged := id + "." + strings.Repeat("0", 32)
	errs, err = b.q.Delete(ctx, forged)
	require.NoError(t, err)
	require.NoError(t, errs[0])
	requireCode(t, errcode.FailedPrecondition, nil2err(b.q.ChangeVisibility(ctx, queue.VisibilityChange{Handle: forged})))
	requireDepth(t, b.q, queue.Depth{InFlight: 1})
}

// TestPersistence: messages and their state survive closing and reopening
// the database.
func TestPersistence(t *testing.T) {
	t.Parallel()
	clk := clock.NewFake(epoch)
	path := filepath.Join(t.TempDir(), "queue.db")
	ctx := t.Context()
	db, err := sqlitequeue.OpenDB(ctx, path, &sqlitequeue.Options{Clock: clk})
	require.NoError(t, err)
	require.NoError(t, db.CreateQueue(ctx, "q", sqlitequeue.Config{Visibility: 10 * time.Second}))
	q, err := db.Open(ctx, "q")
	require.NoError(t, err)
	_, err = q.Send(ctx,
		queue.SendEntry{Body: []byte("in flight"), Attributes: map[string]string{"k": "v"}},
		queue.SendEntry{Body: []byte("delayed"), Delay: time.Minute})
	require.NoError(t, err)
	first, err := q.Receive(ctx, queue.ReceiveOptions{})
	require.NoError(t, err)
	require.Len(t, first, 1)
	require.NoError(t, q.Close())
	require.NoError(t, db.Close())

	db = openDB(t, path, clk)
	q = openQueue(t, db, "q")
	requireDepth(t, q, queue.Depth{InFlight: 1, Delayed: 1})
	clk.Advance(10 * time.Second)
	again, err := q.Receive(ctx, queue.ReceiveOptions{})
	require.NoError(t, err)
	require.Len(t, again, 1)
	require.Equal(t, first[0].ID, again[0].ID)
	require.Equal(t, "in flight", string(again[0].Body))
	require.Equal(t, map[string]string{"k": "v"}, again[0].Attributes)
	require.Equal(t, first[0].SentAt, again[0].SentAt)
	require.Equal(t, 2, again[0].ReceiveCount)
}

// TestDeadLetterMovesInBoundedSteps: one receive moves at most 100
// messages; later receives move the rest, and none is ever returned from
// the source queue past MaxReceives.
func TestDeadLetterMovesInBoundedSteps(t *testing.T) {
	t.Parallel()
	clk := clock.NewFake(epoch)
	db := openDB(t, filepath.Join(t.TempDir(), "queue.db"), clk)
	ctx := t.Context()
	require.NoError(t, db.CreateQueue(ctx, "dlq", sqlitequeue.Config{}))
	require.NoError(t, db.CreateQueue(ctx, "q", sqlitequeue.Config{Visibility: time.Second, DeadLetter: "dlq", MaxReceives: 1}))
	q, dlq := openQueue(t, db, "q"), openQueue(t, db, "dlq")
	const n = 130
	sendN(t, q, n)
	for got := 0; got < n; {
		msgs, err := q.Receive(ctx, queue.ReceiveOptions{Max: queue.MaxBatch})
		require.NoError(t, err)
		require.NotEmpty(t, msgs)
		got += len(msgs)
	}
	clk.Advance(time.Second)
	requireDepth(t, q, queue.Depth{Visible: n})

	// Each receive moves the dead letters among the oldest visible
	// messages it looks at (20), not the whole backlog: its cost does not
	// grow with the queue.
	for moved := 0; moved < n; moved += 20 {
		msgs, err := q.Receive(ctx, queue.ReceiveOptions{Max: queue.MaxBatch})
		require.NoError(t, err)
		require.Empty(t, msgs)
		requireDepth(t, dlq, queue.Depth{Visible: int64(min(moved+20, n))})
	}
	requireDepth(t, q, queue.Depth{})
}

// TestCanceledReceiveClaimsNothing: a receive whose context ends at any
// moment either returns what it claimed or claimed nothing (on a fake
// clock that does not move, a lost claim would stay in flight).
func TestCanceledReceiveClaimsNothing(t *testing.T) {
	t.Parallel()
	b := setup(t, clock.NewFake(epoch), sqlitequeue.Config{})
	const rounds = 40
	returned := 0
	for i := range rounds {
		ctx, cancel := context.WithCancel(t.Context())
		done := receiveAsync(ctx, b.q, queue.ReceiveOptions{Max: queue.MaxBatch, Wait: 5 * time.Second})
		// Cancel at a different moment each round: before, during or
		// after the claim.
		stop := time.AfterFunc(time.Duration(i%8)*250*time.Microsecond, cancel)
		sendN(t, b.q, 1)
		r := wait(t, done)
		if r.err != nil {
			requireCode(t, errcode.Canceled, r.err) // ended before the receive began
		}
		returned += len(r.msgs)
		stop.Stop()
		cancel()
	}
	requireDepth(t, b.q, queue.Depth{Visible: int64(rounds - returned), InFlight: int64(returned)})
	t.Logf("%d of %d messages returned by receives that were canceled", returned, rounds)
}

// TestReceiversRaceAcrossHandles: receivers on two DB handles on one file
// (as two processes would be) never get the same message twice within its
// visibility timeout.
func TestReceiversRaceAcrossHandles(t *testing.T) {
	t.Parallel()
	clk := clock.NewFake(epoch)
	b := setup(t, clk, sqlitequeue.Config{Visibility: time.Minute})
	other := openQueue(t, openDB(t, b.path, clk), "q")
	const n = 150
	ids := sendN(t, b.q, n)

	var (
		mu  sync.Mutex
		got = map[string]int{}
	)
	var wg sync.WaitGroup
	for r := range 6 {
		q := b.q
		if r%2 == 1 {
			q = other
		}
		wg.Go(func() {
			for {
				msgs, err := q.Receive(t.Context(), queue.ReceiveOptions{Max: 1 + r, Wait: 200 * time.Millisecond})
				if err != nil {
					t.Errorf("receive: %v", err)
					return
				}
				if len(msgs) == 0 {
					return
				}
				mu.Lock()
				for _, m := range msgs {
					got[m.ID]++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	requireOnce(t, ids, got)
	requireDepth(t, b.q, queue.Depth{InFlight: n})
}

// TestReceiversRaceAcrossProcesses: a child process and this one receive
// from one file; every message is delivered exactly once.
func TestReceiversRaceAcrossProcesses(t *testing.T) {
	t.Parallel()
	b := setup(t, nil, sqlitequeue.Config{Visibility: 5 * time.Minute})
	const n = 150
	ids := sendN(t, b.q, n)

	var (
		mu  sync.Mutex
		got = map[string]int{}
	)
	c := startChild(t, "receive", b.path, "q")
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for {
				msgs, err := b.q.Receive(t.Context(), queue.ReceiveOptions{Max: queue.MaxBatch, Wait: 500 * time.Millisecond})
				if err != nil {
					t.Errorf("receive: %v", err)
					return
				}
				if len(msgs) == 0 {
					return
				}
				handles := make([]string, len(msgs))
				mu.Lock()
				for i, m := range msgs {
					got[m.ID]++
					handles[i] = m.Handle
				}
				mu.Unlock()
				if _, err := b.q.Delete(t.Context(), handles...); err != nil {
					t.Errorf("delete: %v", err)
					return
				}
			}
		})
	}
	fromChild := 0
	for l := range c.lines {
		id, ok := strings.CutPrefix(l, "got ")
		require.True(t, ok, "child said %q", l)
		mu.Lock()
		got[id]++
		mu.Unlock()
		fromChild++
	}
	wg.Wait()
	t.Logf("child process received %d of %d", fromChild, n)
	requireOnce(t, ids, got)
	requireDepth(t, b.q, queue.Depth{})
}

// TestLongPollAcrossProcesses: a waiting receive returns a message sent by
// another process within a few poll intervals.
func TestLongPollAcrossProcesses(t *testing.T) {
	t.Parallel()
	b := setup(t, nil, sqlitequeue.Config{})
	hook := waitHook(b.db)
	c := startChild(t, "send", b.path, "q")
	const rounds = 8
	var lat []time.Duration
	for i := range rounds {
		drain(hook)
		done := receiveAsync(t.Context(), b.q, queue.ReceiveOptions{Wait: 10 * time.Second})
		// Let the poll interval back off to its maximum (after 16 ×
		// DefaultMaxPoll) and send right after a poll: the worst case.
		for range 60 {
			<-hook
		}
		_, err := fmt.Fprintf(c.stdin, "send round %d\n", i)
		require.NoError(t, err)
		require.Equal(t, "sent", c.next(t))
		sent := time.Now() // the child has committed by now
		r := wait(t, done)
		require.NoError(t, r.err)
		require.Len(t, r.msgs, 1)
		require.Equal(t, fmt.Sprintf("round %d", i), string(r.msgs[0].Body))
		lat = append(lat, max(r.at.Sub(sent), 0))
		_, err = b.q.Delete(t.Context(), r.msgs[0].Handle)
		require.NoError(t, err)
	}
	slices.Sort(lat)
	t.Logf("cross-process send right after a poll → waiting receive (from when the child reported the commit): p50 %s, max %s",
		lat[rounds/2], lat[rounds-1])
	require.Less(t, lat[rounds/2], time.Second)
}

func requireOnce(t *testing.T, ids []string, got map[string]int) {
	t.Helper()
	for _, id := range ids {
		require.Equal(t, 1, got[id], "deliveries of message %s", id)
	}
	require.Len(t, got, len(ids))
}
