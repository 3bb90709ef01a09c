// Package queue is the message queue port, shaped like an SQS standard
// queue: at-least-once delivery, visibility timeouts, receive counts, and a
// dead-letter queue after too many receives.
//
// Queue is the portable type the services use; it validates input against
// SQS's limits (so both profiles refuse the same things), splits batches
// into calls of at most MaxBatch, and delegates to a Driver. Adapters
// implement Driver: sqlitequeue (embedded profile) and sqsqueue (aws
// profile). The conformance suite queue/queuetest pins down the semantics;
// every adapter runs it unchanged.
//
// # Contract
//
//   - Delivery is at least once and unordered. A received message stays
//     invisible for its visibility timeout; unless deleted by then, it is
//     delivered again with a new receipt handle and ReceiveCount+1.
//   - Only the latest receipt handle acts on a message. Delete with an
//     older handle succeeds without deleting (as SQS documents);
//     ChangeVisibility with an older handle, or for a deleted message,
//     fails that entry with errcode.FailedPrecondition.
//   - ChangeVisibility counts the new timeout from the call; a message's
//     visibility cannot extend beyond MaxVisibility after the receive that
//     issued its handle (errcode.InvalidArgument for that entry).
//   - A queue may have a dead-letter queue and a max receive count: a
//     message received that many times moves there (keeping its body,
//     attributes and receive count) at the next receive that would exceed it.
//   - Batch calls succeed as a whole while entries fail: each result names
//     its entry's error.
//   - Receive waits up to Wait for a first message (long polling) and
//     returns early when ctx ends, with what it has (possibly nothing) and
//     no error if ctx ended during the wait.
//
// All methods are safe for concurrent use, from several processes sharing
// one backend.
package queue

import (
	"context"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/jobfleet/jobfleet/pkg/errcode"
)

// SQS's limits, which every adapter observes.
const (
	MaxBatch         = 10
	MaxDelay         = 15 * time.Minute
	MaxVisibility    = 12 * time.Hour
	MaxWait          = 20 * time.Second
	MaxMessageSize   = 1 << 20 // body plus attribute names and values, bytes
	MaxAttributes    = 10
	maxAttrNameBytes = 256
)

// Message is a received message.
type Message struct {
	ID           string
	Body         []byte
	Handle       string // receipt handle of this receive
	ReceiveCount int    // including this receive
	SentAt       time.Time
	Attributes   map[string]string
}

// SendEntry is one message to send.
type SendEntry struct {
	Body       []byte
	Delay      time.Duration // 0..MaxDelay, whole seconds (rounded up)
	Attributes map[string]string
}

// SendResult is the outcome of one sent entry.
type SendResult struct {
	ID  string // message id, on success
	Err error
}

// ReceiveOptions say how to receive.
type ReceiveOptions struct {
	Max        int           // 1..MaxBatch; 0 means 1
	Wait       time.Duration // 0..MaxWait: long-poll time
	Visibility time.Duration // 0 means the queue's default; else whole seconds up to MaxVisibility
}

// VisibilityChange sets a received message's visibility timeout from now.
type VisibilityChange struct {
	Handle  string
	Timeout time.Duration // 0..MaxVisibility, whole seconds (rounded up)
}

// Depth is the approximate number of messages by state.
type Depth struct {
	Visible  int64 // ready to receive
	InFlight int64 // received, not yet deleted or visible again
	Delayed  int64 // sent with a delay that has not passed
}

// Driver is what an adapter implements. Queue validates input first: batches
// hold 1..MaxBatch entries, sizes, delays and timeouts are in range.
type Driver interface {
	Send(ctx context.Context, entries []SendEntry) ([]SendResult, error)
	Receive(ctx context.Context, opts ReceiveOptions) ([]*Message, error)
	// ChangeVisibility returns one error (nil on success) per change.
	ChangeVisibility(ctx context.Context, changes []VisibilityChange) ([]error, error)
	// Delete returns one error (nil on success) per handle.
	Delete(ctx context.Context, handles []string) ([]error, error)
	Depth(ctx context.Context) (Depth, error)
	// Name is the queue's name (for logs and metrics).
	Name() string
	Close() error
}

// Queue is the portable queue.
type Queue struct {
	d      Driver
	closed atomic.Bool
}

// New returns a Queue over d.
func New(d Driver) *Queue { return &Queue{d: d} }

// Name returns the queue's name.
func (q *Queue) Name() string { return q.d.Name() }

// Driver returns the adapter under q.
func (q *Queue) Driver() Driver { return q.d }

func (q *Queue) check() error {
	if q.closed.Load() {
		return errcode.New(errcode.Closed, "queue %s is closed", q.d.Name())
	}
	return nil
}

// attrType is the data type every attribute is sent with; SQS counts it
// toward the message size.
const attrType = "String"

// Size is the size SQS counts for a message: body plus each attribute's
// name, data type and value, in bytes.
func Size(body []byte, attrs map[string]string) int {
	n := len(body)
	for k, v := range attrs {
		n += len(k) + len(attrType) + len(v)
	}
	return n
}

// validChars reports whether s holds only the characters SQS accepts in a
// body or attribute value: #x9 #xA #xD #x20-#xD7FF #xE000-#xFFFD
// #x10000-#x10FFFF, as valid UTF-8.
func validChars[T []byte | string](s T) bool {
	for _, r := range string(s) {
		switch {
		case r == utf8.RuneError:
			return false
		case r == 0x9 || r == 0xA || r == 0xD:
		case r < 0x20, r >= 0xD800 && r <= 0xDFFF, r == 0xFFFE || r == 0xFFFF:
			return false
		}
	}
	return true
}

func validEntry(e SendEntry) error {
	switch {
	case len(e.Body) == 0:
		return errcode.New(errcode.InvalidArgument, "message body is empty")
	case !utf8.Valid(e.Body):
		return errcode.New(errcode.InvalidArgument, "message body is not valid UTF-8")
	case !validChars(e.Body):
		return errcode.New(errcode.InvalidArgument, "message body has characters SQS does not accept (control characters other than tab, LF, CR)")
	case Size(e.Body, e.Attributes) > MaxMessageSize:
		return errcode.New(errcode.InvalidArgument, "message is %d bytes; the limit is %d", Size(e.Body, e.Attributes), MaxMessageSize)
	case e.Delay < 0 || e.Delay > MaxDelay:
		return errcode.New(errcode.InvalidArgument, "delay %s is outside 0..%s", e.Delay, MaxDelay)
	case len(e.Attributes) > MaxAttributes:
		return errcode.New(errcode.InvalidArgument, "%d attributes; the limit is %d", len(e.Attributes), MaxAttributes)
	}
	for k, v := range e.Attributes {
		if !validAttrName(k) {
			return errcode.New(errcode.InvalidArgument, "invalid attribute name %q", k)
		}
		if v == "" || !utf8.ValidString(v) || !validChars(v) {
			return errcode.New(errcode.InvalidArgument, "attribute %s: value must be non-empty UTF-8 without control characters", k)
		}
	}
	return nil
}

// validAttrName follows SQS: 1-256 of A-Z a-z 0-9 _ - ., not starting with
// "AWS." or "Amazon." in any case, no leading, trailing or doubled period.
func validAttrName(k string) bool {
	if k == "" || len(k) > maxAttrNameBytes || k[0] == '.' || k[len(k)-1] == '.' {
		return false
	}
	if lk := strings.ToLower(k); strings.HasPrefix(lk, "aws.") || strings.HasPrefix(lk, "amazon.") {
		return false
	}
	prev := byte(0)
	for i := 0; i < len(k); i++ {
		c := k[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.'
		if !ok || (c == '.' && prev == '.') {
			return false
		}
		prev = c
	}
	return true
}

// Send sends entries, any number, in batches of at most MaxBatch entries
// and MaxMessageSize bytes. Results are in
// the order of entries; an entry that fails validation fails alone.
func (q *Queue) Send(ctx context.Context, entries ...SendEntry) ([]SendResult, error) {
	if err := q.check(); err != nil {
		return nil, err
	}
	out := make([]SendResult, len(entries))
	var idx []int
	var batch []SendEntry
	batchBytes := 0
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		res, err := q.d.Send(ctx, batch)
		if err != nil {
			return err
		}
		if len(res) != len(batch) {
			return errcode.New(errcode.Internal, "queue driver returned %d results for %d messages", len(res), len(batch))
		}
		for i, r := range res {
			out[idx[i]] = r
		}
		idx, batch, batchBytes = idx[:0], batch[:0], 0
		return nil
	}
	for i, e := range entries {
		if err := validEntry(e); err != nil {
			out[i].Err = err
			continue
		}
		e.Delay = Seconds(e.Delay)
		// A batch is also capped at MaxMessageSize in total.
		if size := Size(e.Body, e.Attributes); batchBytes+size > MaxMessageSize {
			if err := flush(); err != nil {
				return nil, err
			}
		}
		idx, batch = append(idx, i), append(batch, e)
		batchBytes += Size(e.Body, e.Attributes)
		if len(batch) == MaxBatch {
			if err := flush(); err != nil {
				return nil, err
			}
		}
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return out, nil
}

// Receive receives up to opts.Max messages, waiting up to opts.Wait for the
// first.
func (q *Queue) Receive(ctx context.Context, opts ReceiveOptions) ([]*Message, error) {
	if err := q.check(); err != nil {
		return nil, err
	}
	if opts.Max == 0 {
		opts.Max = 1
	}
	switch {
	case opts.Max < 1 || opts.Max > MaxBatch:
		return nil, errcode.New(errcode.InvalidArgument, "receive: max %d is outside 1..%d", opts.Max, MaxBatch)
	case opts.Wait < 0 || opts.Wait > MaxWait:
		return nil, errcode.New(errcode.InvalidArgument, "receive: wait %s is outside 0..%s", opts.Wait, MaxWait)
	case opts.Visibility < 0 || opts.Visibility > MaxVisibility:
		return nil, errcode.New(errcode.InvalidArgument, "receive: visibility %s is outside 0..%s", opts.Visibility, MaxVisibility)
	}
	opts.Visibility = Seconds(opts.Visibility)
	return q.d.Receive(ctx, opts)
}

// ChangeVisibility changes the visibility of received messages, any number,
// in batches. It returns one error per change (nil on success).
func (q *Queue) ChangeVisibility(ctx context.Context, changes ...VisibilityChange) ([]error, error) {
	if err := q.check(); err != nil {
		return nil, err
	}
	out := make([]error, len(changes))
	var idx []int
	var batch []VisibilityChange
	for i, c := range changes {
		switch {
		case c.Handle == "":
			out[i] = errcode.New(errcode.InvalidArgument, "empty receipt handle")
		case c.Timeout < 0 || c.Timeout > MaxVisibility:
			out[i] = errcode.New(errcode.InvalidArgument, "visibility %s is outside 0..%s", c.Timeout, MaxVisibility)
		default:
			c.Timeout = Seconds(c.Timeout)
			idx, batch = append(idx, i), append(batch, c)
		}
	}
	return out, forBatches(len(batch), func(lo, hi int) error {
		res, err := q.d.ChangeVisibility(ctx, batch[lo:hi])
		if err != nil {
			return err
		}
		if len(res) != hi-lo {
			return errcode.New(errcode.Internal, "queue driver returned %d results for %d changes", len(res), hi-lo)
		}
		for i, e := range res {
			out[idx[lo+i]] = e
		}
		return nil
	})
}

// Delete deletes received messages by handle, any number, in batches. It
// returns one error per handle (nil on success).
func (q *Queue) Delete(ctx context.Context, handles ...string) ([]error, error) {
	if err := q.check(); err != nil {
		return nil, err
	}
	out := make([]error, len(handles))
	var idx []int
	var batch []string
	for i, h := range handles {
		if h == "" {
			out[i] = errcode.New(errcode.InvalidArgument, "empty receipt handle")
			continue
		}
		idx, batch = append(idx, i), append(batch, h)
	}
	return out, forBatches(len(batch), func(lo, hi int) error {
		res, err := q.d.Delete(ctx, batch[lo:hi])
		if err != nil {
			return err
		}
		if len(res) != hi-lo {
			return errcode.New(errcode.Internal, "queue driver returned %d results for %d deletes", len(res), hi-lo)
		}
		for i, e := range res {
			out[idx[lo+i]] = e
		}
		return nil
	})
}

// Seconds rounds d up to whole seconds, the unit SQS counts delays and
// visibility timeouts in; Queue rounds before a driver sees them.
func Seconds(d time.Duration) time.Duration {
	if r := d % time.Second; r != 0 {
		d += time.Second - r
	}
	return d
}

func forBatches(n int, fn func(lo, hi int) error) error {
	for lo := 0; lo < n; lo += MaxBatch {
		if err := fn(lo, min(lo+MaxBatch, n)); err != nil {
			return err
		}
	}
	return nil
}

// Depth returns the approximate number of messages by state.
func (q *Queue) Depth(ctx context.Context) (Depth, error) {
	if err := q.check(); err != nil {
		return Depth{}, err
	}
	return q.d.Depth(ctx)
}

// Close closes the driver. It is safe to call more than once.
func (q *Queue) Close() error {
	if q.closed.Swap(true) {
		return nil
	}
	return q.d.Close()
}
