// Package memqueue is an in-memory queue.Driver with SQS standard-queue
// semantics (see package queue), for tests and the deterministic simulation
// (package sim). It mirrors sqlitequeue, the embedded profile's adapter: a
// Broker holds several named queues, as a sqlitequeue.DB does, and each Open
// returns a handle on one of them.
//
//	b := memqueue.New(&memqueue.Options{Clock: clk})
//	err := b.CreateQueue(ctx, "work-dlq", memqueue.Config{})
//	err = b.CreateQueue(ctx, "work", memqueue.Config{Visibility: time.Minute, DeadLetter: "work-dlq", MaxReceives: 5})
//	work, err := b.Open(ctx, "work") // a *queue.Queue
//
// # Semantics (as sqlitequeue)
//
//   - Every call is atomic under the broker's lock. A message carries its
//     state: visible-at (ms, by the injected clock), receive count, the time
//     of its latest receive and its current receipt token. A receive claims
//     visible messages by setting visible-at to now + visibility, counting
//     the receive and issuing a new token; the receipt handle is
//     "<message id>.<token>" and only the latest token acts on the message:
//     Delete with an older one deletes nothing and succeeds, ChangeVisibility
//     with one fails with errcode.FailedPrecondition. A malformed handle is
//     errcode.InvalidArgument.
//   - Dead-lettering happens inside a receive: visible messages whose receive
//     count has reached MaxReceives (up to 100 per receive) move to the
//     dead-letter queue, keeping id, body, attributes, send time and receive
//     count, visible at once; they are not returned.
//   - Receive returns as many visible messages as there are, up to Max, in
//     order of the time they became visible, then of sending.
//   - ChangeVisibility counts from the call, and not beyond MaxVisibility
//     after the receive that issued the handle; the latest handle works until
//     the message is received again, also after its timeout expired.
//   - Long polling: a waiting Receive is woken at once by a Send or a
//     ChangeVisibility to 0 on the same broker, and otherwise re-checks every
//     millisecond at first, backing off to Options.MaxPoll, to notice
//     messages whose delay or visibility timeout passed on the clock. Waits
//     are real time; visibility and delays follow the injected clock.
//   - A context that has ended before a call fails it with the context's
//     error (errcode.Canceled) and changes nothing; one that ends while
//     Receive waits returns no messages and no error. Close (of the handle
//     or the broker) ends waiting receives; calls afterwards fail with
//     errcode.Closed.
//   - Message ids are ULIDs made from the clock and a counter, and receipt
//     tokens come from the counter, so a run on a fake clock is
//     reproducible (no randomness).
//
// # Differences from SQS
//
// Those of sqlitequeue: Depth is exact and immediate; no duplicate
// deliveries (wrap it with faultqueue to inject them); Receive returns every
// visible message up to Max; no in-flight limit and no retention period;
// CreateQueue with another configuration updates the queue. And: nothing
// survives the process, and every handle must come from the same Broker.
package memqueue

import (
	"cmp"
	"context"
	"encoding/binary"
	"encoding/hex"
	"github.com/jobfleet/jobfleet/pkg/queue/internal/receipt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/jobfleet/jobfleet/pkg/clock"
	"github.com/jobfleet/jobfleet/pkg/errcode"
	"github.com/jobfleet/jobfleet/pkg/queue"
)

// DefaultVisibility is queue.DefaultVisibility.
const DefaultVisibility = queue.DefaultVisibility

// DefaultMaxPoll is Options.MaxPoll's default.
const DefaultMaxPoll = 10 * time.Millisecond

// MaxMaxReceives is queue.MaxMaxReceives.
const MaxMaxReceives = queue.MaxMaxReceives

const (
	// pollMin is the shortest interval of a waiting receive's re-checks.
	pollMin = time.Millisecond
	// moveLimit bounds the messages one receive moves to the dead-letter
	// queue.
	moveLimit = 100
)

// Options configure a Broker. Nil options mean defaults.
type Options struct {
	// Clock is the time visibility, delays and SentAt follow; nil means
	// the real clock.
	Clock clock.Clock
	// MaxPoll is the longest interval between the re-checks of a waiting
	// receive (for messages whose delay or visibility passed); 0 means
	// DefaultMaxPoll.
	MaxPoll time.Duration
}

// Config is a queue's configuration (queue.Config).
type Config = queue.Config

// Broker is a set of named in-memory queues. It is safe for concurrent use.
type Broker struct {
	clock   clock.Clock
	maxPoll time.Duration

	mu     sync.Mutex
	queues map[string]*mqueue
	byID   map[string]*message // every stored message, by id
	next   uint64              // counter for message ids and receipt tokens
	closed bool
	done   chan struct{} // closed by Close
}

type mqueue struct {
	name string
	cfg  Config
	msgs []*message       // in no particular order
	pos  map[*message]int // index in msgs
	wake chan struct{}    // closed (and replaced) when messages may have become visible
}

type message struct {
	seq          uint64
	id           string
	queue        string
	body         []byte
	attrs        map[string]string
	sentAt       int64 // ms
	visibleAt    int64 // ms
	receiveCount int
	receivedAt   int64 // ms; 0 before the first receive
	token        string
}

// New returns an empty broker.
func New(opts *Options) *Broker {
	if opts == nil {
		opts = &Options{}
	}
	return &Broker{
		clock:   clock.Or(opts.Clock),
		maxPoll: max(cmp.Or(opts.MaxPoll, DefaultMaxPoll), pollMin),
		queues:  map[string]*mqueue{},
		byID:    map[string]*message{},
		done:    make(chan struct{}),
	}
}

// Close closes the broker: queues opened from it fail with errcode.Closed
// and their waiting receives return. It is safe to call more than once.
func (b *Broker) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.closed {
		b.closed = true
		close(b.done)
	}
	return nil
}

func (b *Broker) checkLocked() error {
	if b.closed {
		return errcode.New(errcode.Closed, "queue broker is closed")
	}
	return nil
}

// CreateQueue creates the queue name, or updates its configuration if it
// exists (idempotent). A dead-letter queue must exist first
// (errcode.NotFound otherwise). Queues already open keep the configuration
// they were opened with.
func (b *Broker) CreateQueue(ctx context.Context, name string, cfg Config) error {
	cfg, err := cfg.Normalize(name)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.checkLocked(); err != nil {
		return err
	}
	if cfg.DeadLetter != "" && b.queues[cfg.DeadLetter] == nil {
		return errcode.New(errcode.NotFound, "create queue %s: dead-letter queue %s does not exist", name, cfg.DeadLetter)
	}
	if q, ok := b.queues[name]; ok {
		q.cfg = cfg
		return nil
	}
	b.queues[name] = &mqueue{name: name, cfg: cfg, wake: make(chan struct{}), pos: map[*message]int{}}
	return nil
}

// Open opens the queue name, which must exist (errcode.NotFound
// otherwise). Closing the returned Queue does not close the broker.
func (b *Broker) Open(ctx context.Context, name string) (*queue.Queue, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.checkLocked(); err != nil {
		return nil, err
	}
	q, ok := b.queues[name]
	if !ok {
		return nil, errcode.New(errcode.NotFound, "queue %s does not exist", name)
	}
	return queue.New(&driver{b: b, name: name, cfg: q.cfg, done: make(chan struct{})}), nil
}

// NextVisible reports when the next message of the queue name is or
// becomes visible (a message that is visible now reports a time not after
// now), and false when the queue holds no message. Simulations on a fake
// clock use it to let time run ahead to the next delivery, as a long poll
// would wait for it.
func (b *Broker) NextVisible(name string) (time.Time, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	q, ok := b.queues[name]
	if !ok || len(q.msgs) == 0 {
		return time.Time{}, false
	}
	first := q.msgs[0].visibleAt
	for _, m := range q.msgs[1:] {
		first = min(first, m.visibleAt)
	}
	return time.UnixMilli(first).UTC(), true
}

// nextLocked returns a fresh counter value.
func (b *Broker) nextLocked() uint64 {
	b.next++
	return b.next
}

// newIDLocked returns a message id: a ULID of the send time (ms) and the
// counter.
func (b *Broker) newIDLocked(ms int64, n uint64) string {
	var id ulid.ULID
	_ = id.SetTime(uint64(max(ms, 0)))
	var e [10]byte
	binary.BigEndian.PutUint64(e[2:], n)
	_ = id.SetEntropy(e[:])
	return id.String()
}

// tokenFor returns a receipt token for counter value n.
func tokenFor(n uint64) string {
	var t [receipt.TokenLen / 2]byte
	binary.BigEndian.PutUint64(t[8:], n)
	// Spread the counter so tokens do not read as small numbers.
	binary.BigEndian.PutUint64(t[:8], n*0x9E3779B97F4A7C15)
	return hex.EncodeToString(t[:])
}

func (q *mqueue) add(m *message) {
	q.pos[m] = len(q.msgs)
	q.msgs = append(q.msgs, m)
}

func (q *mqueue) remove(m *message) {
	i, ok := q.pos[m]
	if !ok {
		return
	}
	last := len(q.msgs) - 1
	q.msgs[i] = q.msgs[last]
	q.pos[q.msgs[i]] = i
	q.msgs[last] = nil
	q.msgs = q.msgs[:last]
	delete(q.pos, m)
}

// wakeLocked wakes the receives waiting on q.
func (q *mqueue) wakeLocked() {
	close(q.wake)
	q.wake = make(chan struct{})
}

// driver is one open handle on a queue of a Broker.
type driver struct {
	b    *Broker
	name string
	cfg  Config // as opened

	closeOnce sync.Once
	done      chan struct{}
}

var _ queue.Driver = (*driver)(nil)

func (d *driver) Name() string { return d.name }

// Close closes this handle: its calls fail with errcode.Closed and its
// waiting receives return. The broker stays open.
func (d *driver) Close() error {
	d.closeOnce.Do(func() { close(d.done) })
	return nil
}

// check checks that the handle is open and ctx has not ended.
func (d *driver) check(ctx context.Context) error {
	select {
	case <-d.done:
		return errcode.New(errcode.Closed, "queue %s is closed", d.name)
	default:
	}
	return ctx.Err()
}

// begin checks the handle, the broker and ctx, and locks the broker; on
// success it returns the queue and the caller must unlock.
func (d *driver) begin(ctx context.Context) (*mqueue, error) {
	if err := d.check(ctx); err != nil {
		return nil, err
	}
	d.b.mu.Lock()
	if err := d.b.checkLocked(); err != nil {
		d.b.mu.Unlock()
		return nil, err
	}
	q, ok := d.b.queues[d.name]
	if !ok {
		d.b.mu.Unlock()
		return nil, errcode.New(errcode.NotFound, "queue %s does not exist", d.name)
	}
	return q, nil
}

func ms(t time.Time) int64 { return t.UnixMilli() }

func (d *driver) Send(ctx context.Context, entries []queue.SendEntry) ([]queue.SendResult, error) {
	q, err := d.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer d.b.mu.Unlock()
	now := ms(d.b.clock.Now())
	out := make([]queue.SendResult, len(entries))
	delayed := true
	for i, e := range entries {
		n := d.b.nextLocked()
		m := &message{
			seq:       n,
			id:        d.b.newIDLocked(now, n),
			queue:     d.name,
			body:      slices.Clone(e.Body),
			sentAt:    now,
			visibleAt: now + e.Delay.Milliseconds(),
		}
		if len(e.Attributes) > 0 {
			m.attrs = maps.Clone(e.Attributes)
		}
		d.b.byID[m.id] = m
		q.add(m)
		out[i].ID = m.id
		delayed = delayed && e.Delay > 0
	}
	if !delayed {
		q.wakeLocked()
	}
	return out, nil
}

// Receive claims up to opts.Max visible messages, waiting up to opts.Wait
// (real time) for the first; see the package doc.
func (d *driver) Receive(ctx context.Context, opts queue.ReceiveOptions) ([]*queue.Message, error) {
	opts.Max = min(max(opts.Max, 1), queue.MaxBatch)
	if opts.Visibility == 0 {
		opts.Visibility = d.cfg.Visibility
	}
	if err := d.check(ctx); err != nil {
		return nil, err
	}
	start := time.Now()
	deadline := start.Add(opts.Wait)
	var timer *time.Timer
	for first := true; ; first = false {
		msgs, wake, err := d.receiveOnce(ctx, opts)
		switch {
		case err != nil && !first && ctx.Err() != nil:
			return nil, nil // ctx ended while waiting
		case err != nil:
			return nil, err
		case len(msgs) > 0 || opts.Wait == 0:
			return msgs, nil
		}
		now := time.Now()
		left := deadline.Sub(now)
		if left <= 0 {
			return nil, nil
		}
		// Re-check often while the wait is young, then back off, as
		// sqlitequeue does: a sixteenth of the time waited so far.
		poll := min(max(now.Sub(start)/16, pollMin), d.b.maxPoll, left)
		if timer == nil {
			timer = time.NewTimer(poll)
			defer timer.Stop()
		} else {
			timer.Reset(poll)
		}
		select {
		case <-wake:
			start = time.Now()
		case <-timer.C:
		case <-ctx.Done():
			return nil, nil
		case <-d.done:
			return nil, errcode.New(errcode.Closed, "queue %s is closed", d.name)
		case <-d.b.done:
			return nil, errcode.New(errcode.Closed, "queue broker is closed")
		}
	}
}

// receiveOnce moves dead letters and claims up to opts.Max visible
// messages; with none, it returns the channel a wake-up closes.
func (d *driver) receiveOnce(ctx context.Context, opts queue.ReceiveOptions) ([]*queue.Message, <-chan struct{}, error) {
	q, err := d.begin(ctx)
	if err != nil {
		return nil, nil, err
	}
	defer d.b.mu.Unlock()
	now := ms(d.b.clock.Now())
	var visible []*message
	for _, m := range q.msgs {
		if m.visibleAt <= now {
			visible = append(visible, m)
		}
	}
	if len(visible) == 0 {
		return nil, q.wake, nil
	}
	slices.SortFunc(visible, func(a, b *message) int {
		return cmp.Or(cmp.Compare(a.visibleAt, b.visibleAt), cmp.Compare(a.seq, b.seq))
	})
	below := int(^uint(0) >> 1)
	if d.cfg.DeadLetter != "" {
		below = d.cfg.MaxReceives
		if dlq := d.b.queues[d.cfg.DeadLetter]; dlq != nil {
			moved := 0
			for _, m := range visible {
				if moved == moveLimit {
					break
				}
				if m.receiveCount >= below {
					q.remove(m)
					m.queue, m.visibleAt, m.receivedAt, m.token = dlq.name, now, 0, ""
					dlq.add(m)
					moved++
				}
			}
			if moved > 0 {
				dlq.wakeLocked()
			}
		}
	}
	var claimed []*message
	for _, m := range visible {
		if len(claimed) == opts.Max {
			break
		}
		if m.queue == d.name && m.receiveCount < below {
			claimed = append(claimed, m)
		}
	}
	if len(claimed) == 0 {
		return nil, q.wake, nil
	}
	// Returned in send order, as sqlitequeue does.
	slices.SortFunc(claimed, func(a, b *message) int { return cmp.Compare(a.seq, b.seq) })
	out := make([]*queue.Message, len(claimed))
	for i, m := range claimed {
		m.visibleAt = now + opts.Visibility.Milliseconds()
		m.receiveCount++
		m.receivedAt = now
		m.token = tokenFor(d.b.nextLocked())
		out[i] = &queue.Message{
			ID:           m.id,
			Body:         slices.Clone(m.body),
			Handle:       receipt.Handle(m.id, m.token),
			ReceiveCount: m.receiveCount,
			SentAt:       time.UnixMilli(m.sentAt).UTC(),
			Attributes:   maps.Clone(m.attrs),
		}
	}
	return out, nil, nil
}

// currentLocked returns the message in this queue whose latest handle h is.
func (d *driver) currentLocked(id, token string) *message {
	m := d.b.byID[id]
	if m == nil || m.queue != d.name || m.token != token {
		return nil
	}
	return m
}

func (d *driver) ChangeVisibility(ctx context.Context, changes []queue.VisibilityChange) ([]error, error) {
	q, err := d.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer d.b.mu.Unlock()
	out := make([]error, len(changes))
	now := d.b.clock.Now()
	visible := false
	for i, c := range changes {
		id, token, ok := receipt.Parse(c.Handle)
		if !ok {
			out[i] = receipt.Invalid(c.Handle)
			continue
		}
		m := d.currentLocked(id, token)
		if m == nil {
			out[i] = errcode.New(errcode.FailedPrecondition,
				"change visibility in %s: message %s was deleted or received again since this handle", d.name, id)
			continue
		}
		until := now.Add(c.Timeout)
		if limit := time.UnixMilli(m.receivedAt).Add(queue.MaxVisibility); until.After(limit) {
			out[i] = errcode.New(errcode.InvalidArgument,
				"change visibility in %s: message %s cannot stay invisible past %s, %s after its receive",
				d.name, id, limit.UTC().Format(time.RFC3339), queue.MaxVisibility)
			continue
		}
		m.visibleAt = ms(until)
		visible = visible || c.Timeout == 0
	}
	if visible {
		q.wakeLocked()
	}
	return out, nil
}

func (d *driver) Delete(ctx context.Context, handles []string) ([]error, error) {
	q, err := d.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer d.b.mu.Unlock()
	out := make([]error, len(handles))
	for i, h := range handles {
		id, token, ok := receipt.Parse(h)
		if !ok {
			out[i] = receipt.Invalid(h)
			continue
		}
		// A stale handle or a message already gone: success, as SQS
		// documents.
		if m := d.currentLocked(id, token); m != nil {
			q.remove(m)
			delete(d.b.byID, id)
		}
	}
	return out, nil
}

func (d *driver) Depth(ctx context.Context) (queue.Depth, error) {
	q, err := d.begin(ctx)
	if err != nil {
		return queue.Depth{}, err
	}
	defer d.b.mu.Unlock()
	now := ms(d.b.clock.Now())
	var dep queue.Depth
	for _, m := range q.msgs {
		switch {
		case m.visibleAt <= now:
			dep.Visible++
		case m.receiveCount > 0:
			dep.InFlight++
		default:
			dep.Delayed++
		}
	}
	return dep, nil
}
