package sqlitequeue

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"github.com/jobfleet/jobfleet/pkg/queue/internal/receipt"
	"math"
	"sync"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/jobfleet/jobfleet/pkg/errcode"
	"github.com/jobfleet/jobfleet/pkg/queue"
)

var _ queue.Driver = (*driver)(nil)

const (
	// pollMin is the shortest interval at which a waiting receive polls
	// for messages it cannot be woken for: sent by other processes, or
	// whose visibility timeout or delay expired. DefaultMaxPoll is the
	// longest.
	pollMin = time.Millisecond
	// moveWindow is how many of the oldest visible messages a receive
	// looks at for dead letters (at least the messages it asks for): the
	// ones it would otherwise claim. Dead letters further back move when
	// they come to the front, as SQS moves them when a receive meets them.
	moveWindow = 20
)

// driver is one open queue of a DB.
type driver struct {
	db          *DB
	name        string
	visibility  time.Duration
	deadLetter  string
	maxReceives int

	closeOnce sync.Once
	done      chan struct{}
}

func (d *driver) Name() string { return d.name }

// Close closes this handle: its calls fail with errcode.Closed and its
// waiting receives return. The DB stays open.
func (d *driver) Close() error {
	d.closeOnce.Do(func() { close(d.done) })
	return nil
}

func (d *driver) check() error {
	select {
	case <-d.done:
		return errcode.New(errcode.Closed, "queue %s is closed", d.name)
	default:
		return d.db.check()
	}
}

// begin checks that the queue is open and ctx has not ended.
func (d *driver) begin(ctx context.Context) error {
	if err := d.check(); err != nil {
		return err
	}
	return ctx.Err()
}

func ms(t time.Time) int64 { return t.UnixMilli() }

func (d *driver) Send(ctx context.Context, entries []queue.SendEntry) ([]queue.SendResult, error) {
	if err := d.begin(ctx); err != nil {
		return nil, err
	}
	out := make([]queue.SendResult, len(entries))
	delayed := true
	err := d.db.inTx(ctx, func(tx *sql.Tx) error {
		insertMessage := tx.StmtContext(ctx, d.db.st.insertMessage)
		insertBody := tx.StmtContext(ctx, d.db.st.insertBody)
		now := ms(d.db.clock.Now())
		for i, e := range entries {
			var attrs any // NULL without attributes
			if len(e.Attributes) > 0 {
				b, err := json.Marshal(e.Attributes)
				if err != nil {
					return errcode.Wrap(errcode.Internal, err, "send to %s: encode attributes", d.name)
				}
				attrs = string(b)
			}
			id := ulid.Make().String()
			var seq int64
			err := insertMessage.QueryRowContext(ctx,
				id, d.name, now, now+e.Delay.Milliseconds()).Scan(&seq)
			if err != nil {
				return mapErr(ctx, err, "send to %s", d.name)
			}
			if _, err := insertBody.ExecContext(ctx, seq, e.Body, attrs); err != nil {
				return mapErr(ctx, err, "send to %s", d.name)
			}
			out[i].ID = id
			delayed = delayed && e.Delay > 0
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if !delayed {
		d.db.wake(d.name)
	}
	return out, nil
}

// Receive claims up to opts.Max visible messages, waiting up to opts.Wait
// (real time) for the first. A receive begun with an ended ctx fails with
// ctx's error; once waiting, an ending ctx returns no messages and no
// error. A message is claimed only by a committed transaction, and a
// committed claim is returned, so an ending ctx loses nothing.
func (d *driver) Receive(ctx context.Context, opts queue.ReceiveOptions) ([]*queue.Message, error) {
	if err := d.begin(ctx); err != nil {
		return nil, err
	}
	opts.Max = min(max(opts.Max, 1), queue.MaxBatch) // Queue has validated it; stay in bounds regardless
	if opts.Visibility == 0 {
		opts.Visibility = d.visibility
	}
	start := time.Now()
	deadline := start.Add(opts.Wait)
	var timer *time.Timer
	for {
		wake := d.db.wakeChan(d.name) // before looking, so no send is missed
		msgs, err := d.receiveOnce(ctx, opts)
		switch {
		case err != nil && opts.Wait > 0 && ctx.Err() != nil:
			return nil, nil
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
		// Poll often while the wait is young (messages tend to come in
		// bursts), then back off: the interval is a sixteenth of the time
		// waited so far, within [pollMin, pollMax].
		poll := min(max(now.Sub(start)/16, d.db.pollMin), d.db.pollMax, left)
		if timer == nil {
			timer = time.NewTimer(poll)
			defer timer.Stop()
		} else {
			timer.Reset(poll)
		}
		if h := d.db.hookWaiting; h != nil {
			h(d.name)
		}
		select {
		case <-wake:
			start = time.Now()
		case <-timer.C:
		case <-ctx.Done():
			return nil, nil
		case <-d.done:
			return nil, d.check()
		case <-d.db.done:
			return nil, d.check()
		}
	}
}

// receiveOnce looks for visible messages with a cheap read and, if there
// are any, moves dead letters and claims up to opts.Max in one write
// transaction.
func (d *driver) receiveOnce(ctx context.Context, opts queue.ReceiveOptions) ([]*queue.Message, error) {
	var found bool
	if err := d.db.st.anyVisible.QueryRowContext(ctx, d.name, ms(d.db.clock.Now())).Scan(&found); err != nil {
		return nil, mapErr(ctx, err, "receive from %s", d.name)
	}
	if !found {
		return nil, nil
	}
	var (
		out   []*queue.Message
		moved int64
	)
	err := d.db.inTx(ctx, func(tx *sql.Tx) error {
		now := ms(d.db.clock.Now())
		var err error
		if moved, err = d.moveDead(ctx, tx, now, opts.Max); err != nil {
			return err
		}
		out, err = d.claim(ctx, tx, now, opts)
		return err
	})
	if err != nil {
		return nil, err
	}
	if moved > 0 {
		d.db.wake(d.deadLetter)
	}
	return out, nil
}

// moveDead moves visible messages that have had their MaxReceives to the
// dead-letter queue, and returns how many it moved.
func (d *driver) moveDead(ctx context.Context, tx *sql.Tx, now int64, window int) (int64, error) {
	if d.deadLetter == "" {
		return 0, nil
	}
	res, err := tx.StmtContext(ctx, d.db.st.moveDead).ExecContext(ctx, d.deadLetter, now, d.name, d.maxReceives, max(window, moveWindow))
	if err != nil {
		return 0, mapErr(ctx, err, "receive from %s: move to dead-letter queue %s", d.name, d.deadLetter)
	}
	n, err := res.RowsAffected()
	return n, mapErr(ctx, err, "receive from %s: move to dead-letter queue %s", d.name, d.deadLetter)
}

// claim claims up to opts.Max visible messages (below MaxReceives, with a
// dead-letter queue) and returns them in send order.
func (d *driver) claim(ctx context.Context, tx *sql.Tx, now int64, opts queue.ReceiveOptions) ([]*queue.Message, error) {
	below := int64(math.MaxInt64)
	if d.deadLetter != "" {
		below = int64(d.maxReceives)
	}
	rows, err := tx.StmtContext(ctx, d.db.st.claim).QueryContext(ctx, now, opts.Visibility.Milliseconds(), d.name, below, opts.Max)
	if err != nil {
		return nil, mapErr(ctx, err, "receive from %s", d.name)
	}
	bySeq := map[int64]*queue.Message{}
	args := make([]any, queue.MaxBatch) // the seqs to read bodies of, 0 for none
	for i := range args {
		args[i] = 0
	}
	for rows.Next() {
		var (
			seq, sentAt int64
			token       string
			m           = new(queue.Message)
		)
		if err := rows.Scan(&seq, &m.ID, &sentAt, &m.ReceiveCount, &token); err != nil {
			rows.Close()
			return nil, mapErr(ctx, err, "receive from %s", d.name)
		}
		m.SentAt = time.UnixMilli(sentAt).UTC()
		m.Handle = receipt.Handle(m.ID, token)
		args[len(bySeq)] = seq
		bySeq[seq] = m
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return nil, mapErr(ctx, err, "receive from %s", d.name)
	}
	if len(bySeq) == 0 {
		return nil, nil
	}

	rows, err = tx.StmtContext(ctx, d.db.st.bodies).QueryContext(ctx, args...)
	if err != nil {
		return nil, mapErr(ctx, err, "receive from %s: read bodies", d.name)
	}
	defer rows.Close()
	out := make([]*queue.Message, 0, len(bySeq))
	for rows.Next() {
		var (
			seq   int64
			body  []byte
			attrs sql.NullString
		)
		if err := rows.Scan(&seq, &body, &attrs); err != nil {
			return nil, mapErr(ctx, err, "receive from %s: read bodies", d.name)
		}
		m := bySeq[seq]
		if m == nil {
			return nil, errcode.New(errcode.Internal, "receive from %s: read the body of unclaimed message %d", d.name, seq)
		}
		m.Body = body
		if attrs.Valid {
			if err := json.Unmarshal([]byte(attrs.String), &m.Attributes); err != nil {
				return nil, errcode.Wrap(errcode.Internal, err, "receive from %s: message %s: decode attributes", d.name, m.ID)
			}
		}
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, mapErr(ctx, err, "receive from %s: read bodies", d.name)
	}
	if len(out) != len(bySeq) {
		return nil, errcode.New(errcode.Internal, "receive from %s: %d messages without a body", d.name, len(bySeq)-len(out))
	}
	return out, nil
}

func (d *driver) ChangeVisibility(ctx context.Context, changes []queue.VisibilityChange) ([]error, error) {
	if err := d.begin(ctx); err != nil {
		return nil, err
	}
	out := make([]error, len(changes))
	visible := false
	err := d.db.inTx(ctx, func(tx *sql.Tx) error {
		visible = false
		current := tx.StmtContext(ctx, d.db.st.current)
		setVisible := tx.StmtContext(ctx, d.db.st.setVisible)
		now := d.db.clock.Now()
		for i, c := range changes {
			out[i] = nil
			id, token, ok := receipt.Parse(c.Handle)
			if !ok {
				out[i] = receipt.Invalid(c.Handle)
				continue
			}
			var seq, receivedAt int64
			err := current.QueryRowContext(ctx, id, d.name, token).Scan(&seq, &receivedAt)
			if errors.Is(err, sql.ErrNoRows) {
				out[i] = errcode.New(errcode.FailedPrecondition,
					"change visibility in %s: message %s was deleted or received again since this handle", d.name, id)
				continue
			}
			if err != nil {
				return mapErr(ctx, err, "change visibility in %s", d.name)
			}
			until := now.Add(c.Timeout)
			if limit := time.UnixMilli(receivedAt).Add(queue.MaxVisibility); until.After(limit) {
				out[i] = errcode.New(errcode.InvalidArgument,
					"change visibility in %s: message %s cannot stay invisible past %s, %s after its receive",
					d.name, id, limit.UTC().Format(time.RFC3339), queue.MaxVisibility)
				continue
			}
			if _, err := setVisible.ExecContext(ctx, ms(until), seq); err != nil {
				return mapErr(ctx, err, "change visibility in %s", d.name)
			}
			visible = visible || c.Timeout == 0
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if visible {
		d.db.wake(d.name)
	}
	return out, nil
}

func (d *driver) Delete(ctx context.Context, handles []string) ([]error, error) {
	if err := d.begin(ctx); err != nil {
		return nil, err
	}
	out := make([]error, len(handles))
	err := d.db.inTx(ctx, func(tx *sql.Tx) error {
		del := tx.StmtContext(ctx, d.db.st.deleteMessage)
		for i, h := range handles {
			out[i] = nil
			id, token, ok := receipt.Parse(h)
			if !ok {
				out[i] = receipt.Invalid(h)
				continue
			}
			// No row deleted means a stale handle or a message already
			// gone: success, as SQS documents.
			if _, err := del.ExecContext(ctx, id, d.name, token); err != nil {
				return mapErr(ctx, err, "delete from %s", d.name)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func (d *driver) Depth(ctx context.Context) (queue.Depth, error) {
	if err := d.begin(ctx); err != nil {
		return queue.Depth{}, err
	}
	var dep queue.Depth
	err := d.db.st.depth.QueryRowContext(ctx, ms(d.db.clock.Now()), d.name).Scan(&dep.Visible, &dep.InFlight, &dep.Delayed)
	if err != nil {
		return queue.Depth{}, mapErr(ctx, err, "depth of %s", d.name)
	}
	return dep, nil
}
