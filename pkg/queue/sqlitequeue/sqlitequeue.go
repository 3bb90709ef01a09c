// Package sqlitequeue is the embedded profile's queue adapter: SQS
// standard-queue semantics (see package queue) on SQLite tables, for
// several named queues in one database file that several processes
// (dispatcher, workers, reaper) share.
//
//	db, err := sqlitequeue.OpenDB(ctx, filepath.Join(dataDir, "queue.db"), nil)
//	err = db.CreateQueue(ctx, "work-dlq", sqlitequeue.Config{})
//	err = db.CreateQueue(ctx, "work", sqlitequeue.Config{Visibility: time.Minute, DeadLetter: "work-dlq", MaxReceives: 5})
//	work, err := db.Open(ctx, "work") // a *queue.Queue
//
// # How it works
//
// Each Driver call is one SQLite transaction (BEGIN IMMEDIATE, so it takes
// the write lock up front), covering a whole batch. A message row carries
// its state: visible_at (ms since the epoch, by the injected clock),
// receive_count, received_at and the current receipt token. Receive claims
// up to Max rows whose visible_at has passed with a single UPDATE ...
// RETURNING that sets visible_at to now + visibility, increments
// receive_count and draws a fresh random token; because the claim is one
// statement under the write lock, two receivers, in this process or
// another, can never be handed the same message within its visibility
// timeout. A receipt handle is "<message id>.<token>"; only the latest
// token matches, so Delete with an older handle deletes nothing and
// ChangeVisibility with one fails with errcode.FailedPrecondition.
//
// Dead-lettering happens inside the receive transaction, as SQS does it
// lazily on receive: visible messages whose receive count has reached the
// queue's MaxReceives move to the dead-letter queue (same row, same id,
// send time and receive count, visible at once) instead of being returned.
//
// Long polling: a waiting Receive is woken at once by a Send (or a change
// that makes messages visible) through the same *DB, and otherwise polls
// with a cheap indexed query, every millisecond at first and backing off
// to Options.MaxPoll (10 ms by default), which is how it notices messages
// sent by other processes and visibility timeouts that expire. Waits are
// real time; visibility and delays follow the injected clock, and each
// poll re-reads it.
//
// # Schema
//
//	queues(name PK, visibility_ms, dead_letter → queues, max_receives)
//	messages(seq PK, id UNIQUE, queue, sent_at, visible_at, receive_count, received_at, token)
//	  index (queue, visible_at, receive_count): claims, dead-letter moves, Depth
//	bodies(seq PK → messages ON DELETE CASCADE, body, attributes JSON)
//
// Bodies live apart from the message state, so a receive or a visibility
// change rewrites a few dozen bytes, not a body of up to 1 MiB.
//
// # Differences from SQS
//
//   - Depth is exact and immediate; SQS's counts are approximate and lag.
//   - No duplicates: a message is never delivered twice within its
//     visibility timeout, and a deleted message never comes back. (Callers
//     must still tolerate duplicates: SQS may deliver them.)
//   - Order is roughly FIFO by the time a message became visible, then by
//     send order; callers must not rely on it, SQS gives no order.
//   - Receive returns as many visible messages as there are, up to Max;
//     SQS may return fewer, and a short poll may return none.
//   - No limit on in-flight messages (SQS: about 120,000) or on stored
//     messages.
//   - No retention period: a message stays until it is deleted or
//     dead-lettered. SQS deletes messages after MessageRetentionPeriod
//     (4 days by default). jobfleet does not rely on retention: the reaper
//     drains the work DLQ and re-sends messages for QUEUED jobs.
//   - Dead-lettering moves the eligible messages among the oldest visible
//     ones a receive looks at (up to 20 per receive), where SQS moves those
//     its sampling meets; the move is the same, only its moment differs.
//   - ChangeVisibility with the latest handle works until the message is
//     received again, including after its timeout expired (SQS may answer
//     MessageNotInflight then; the conformance suite leaves it open).
//   - CreateQueue with a different configuration updates the queue; SQS's
//     CreateQueue refuses different attributes.
//   - A malformed receipt handle is errcode.InvalidArgument, as SQS's
//     ReceiptHandleIsInvalid; a well-formed handle for a message that is
//     gone (or in another queue) is treated as stale.
//   - Timestamps have millisecond resolution; delays and visibility
//     timeouts are whole seconds (Queue rounds them up), as in SQS.
package sqlitequeue

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jobfleet/jobfleet/pkg/clock"
	"github.com/jobfleet/jobfleet/pkg/errcode"
	"github.com/jobfleet/jobfleet/pkg/internal/sqlitedb"
	"github.com/jobfleet/jobfleet/pkg/queue"
)

// DefaultVisibility is queue.DefaultVisibility.
const DefaultVisibility = queue.DefaultVisibility

// DefaultMaxPoll is Options.MaxPoll's default.
const DefaultMaxPoll = 10 * time.Millisecond

// MaxMaxReceives is queue.MaxMaxReceives.
const MaxMaxReceives = queue.MaxMaxReceives

const schema = `
CREATE TABLE IF NOT EXISTS queues (
	name          TEXT PRIMARY KEY,
	visibility_ms INTEGER NOT NULL,
	dead_letter   TEXT REFERENCES queues(name),
	max_receives  INTEGER NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS messages (
	seq           INTEGER PRIMARY KEY,
	id            TEXT NOT NULL UNIQUE,
	queue         TEXT NOT NULL REFERENCES queues(name),
	sent_at       INTEGER NOT NULL,
	visible_at    INTEGER NOT NULL,
	receive_count INTEGER NOT NULL DEFAULT 0,
	received_at   INTEGER,
	token         TEXT
) STRICT;
CREATE INDEX IF NOT EXISTS messages_by_visible ON messages(queue, visible_at, receive_count);
CREATE TABLE IF NOT EXISTS bodies (
	seq        INTEGER PRIMARY KEY REFERENCES messages(seq) ON DELETE CASCADE,
	body       BLOB NOT NULL,
	attributes TEXT
) STRICT;
`

// maxConns bounds the connections of one DB: one writer at a time (see
// DB.write) plus readers for polls and Depth.
const maxConns = 8

// Options configure a DB. The zero value (or nil) means defaults.
type Options struct {
	// Clock is the time visibility, delays and SentAt follow; nil means
	// the real clock. Every process sharing a file must use the same time.
	Clock clock.Clock
	// MaxPoll is the longest interval between the polls of a waiting
	// receive, which is how it sees messages sent by other processes and
	// timeouts that expire; 0 means DefaultMaxPoll, and it is at least
	// 1 ms. A receive polls every millisecond at first and backs off to
	// MaxPoll after waiting 16 × MaxPoll. Each poll costs a timer wake-up
	// and an indexed read (0.1-0.3 ms of CPU on a small VM, so about 3% of
	// a core per waiting receive at 10 ms); a message sent by another
	// process reaches an idle waiting receive on average MaxPoll/2 later.
	// Sends in the same process wake receives at once.
	MaxPoll time.Duration
}

// Config is a queue's configuration (queue.Config).
type Config = queue.Config

// DB is an open queue database: a set of named queues in one SQLite file.
// It is safe for concurrent use, and several processes may open the same
// file.
type DB struct {
	sql   *sql.DB
	st    *statements
	clock clock.Clock
	path  string

	// write serializes this process's write transactions, so goroutines
	// queue here (honouring ctx) instead of sleeping in SQLite's busy
	// handler; other processes still meet the file lock.
	write chan struct{}

	mu    sync.Mutex
	wakes map[string]chan struct{} // queue name → closed on a change that may make messages visible

	done      chan struct{}
	closeOnce sync.Once
	closeErr  error

	// pollMin and pollMax bound the interval of a waiting receive's polls.
	pollMin, pollMax time.Duration
	// hookWaiting, if set (tests), is called each time a receive starts
	// waiting.
	hookWaiting func(queue string)
}

// OpenDB opens (creating if needed) the queue database at path.
func OpenDB(ctx context.Context, path string, opts *Options) (*DB, error) {
	if opts == nil {
		opts = &Options{}
	}
	sdb, err := sqlitedb.Open(ctx, path, schema)
	if err != nil {
		return nil, fmt.Errorf("open queue database: %w", err)
	}
	sdb.SetMaxOpenConns(maxConns)
	sdb.SetMaxIdleConns(maxConns)
	st, err := prepare(ctx, sdb)
	if err != nil {
		sdb.Close()
		return nil, sqlitedb.MapErr(err, "open queue database %s: prepare statements", path)
	}
	return &DB{
		sql:   sdb,
		st:    st,
		clock: clock.Or(opts.Clock),
		path:  path,
		write: make(chan struct{}, 1),
		wakes: map[string]chan struct{}{},
		done:  make(chan struct{}),

		pollMin: pollMin,
		pollMax: max(cmp.Or(opts.MaxPoll, DefaultMaxPoll), pollMin),
	}, nil
}

// Close closes the database. Queues opened from it fail with
// errcode.Closed afterwards, and their waiting receives return. It is safe
// to call more than once.
func (db *DB) Close() error {
	db.closeOnce.Do(func() {
		close(db.done)
		db.closeErr = errors.Join(db.st.close(), db.sql.Close())
	})
	return db.closeErr
}

// CreateQueue creates the queue name, or updates its configuration if it
// exists (idempotent). A dead-letter queue must exist first
// (errcode.NotFound otherwise). Queues already open keep the configuration
// they were opened with.
func (db *DB) CreateQueue(ctx context.Context, name string, cfg Config) error {
	if err := db.check(); err != nil {
		return err
	}
	cfg, err := cfg.Normalize(name)
	if err != nil {
		return err
	}
	var dlq any // NULL without one
	if cfg.DeadLetter != "" {
		dlq = cfg.DeadLetter
	}
	return db.inTx(ctx, func(tx *sql.Tx) error {
		if cfg.DeadLetter != "" {
			var one int
			err := tx.QueryRowContext(ctx, `SELECT 1 FROM queues WHERE name = ?`, cfg.DeadLetter).Scan(&one)
			if errors.Is(err, sql.ErrNoRows) {
				return errcode.New(errcode.NotFound, "create queue %s: dead-letter queue %s does not exist", name, cfg.DeadLetter)
			}
			if err != nil {
				return mapErr(ctx, err, "create queue %s", name)
			}
		}
		_, err := tx.ExecContext(ctx, `
			INSERT INTO queues (name, visibility_ms, dead_letter, max_receives) VALUES (?, ?, ?, ?)
			ON CONFLICT (name) DO UPDATE SET
				visibility_ms = excluded.visibility_ms,
				dead_letter = excluded.dead_letter,
				max_receives = excluded.max_receives`,
			name, cfg.Visibility.Milliseconds(), dlq, cfg.MaxReceives)
		return mapErr(ctx, err, "create queue %s", name)
	})
}

// Open opens the queue name, which must exist (errcode.NotFound
// otherwise). Closing the returned Queue does not close db.
func (db *DB) Open(ctx context.Context, name string) (*queue.Queue, error) {
	if err := db.check(); err != nil {
		return nil, err
	}
	d := &driver{db: db, name: name, done: make(chan struct{})}
	var (
		visMS int64
		dlq   sql.NullString
	)
	err := db.sql.QueryRowContext(ctx, `SELECT visibility_ms, dead_letter, max_receives FROM queues WHERE name = ?`, name).
		Scan(&visMS, &dlq, &d.maxReceives)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, errcode.New(errcode.NotFound, "queue %s does not exist", name)
	}
	if err != nil {
		return nil, mapErr(ctx, err, "open queue %s", name)
	}
	d.visibility = time.Duration(visMS) * time.Millisecond
	d.deadLetter = dlq.String
	return queue.New(d), nil
}

func (db *DB) check() error {
	select {
	case <-db.done:
		return errcode.New(errcode.Closed, "queue database %s is closed", db.path)
	default:
		return nil
	}
}

// inTx runs fn in one write transaction, after this process's earlier
// writers.
func (db *DB) inTx(ctx context.Context, fn func(*sql.Tx) error) error {
	select {
	case db.write <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	case <-db.done:
		return db.check()
	}
	defer func() { <-db.write }()
	err := sqlitedb.InTx(ctx, db.sql, fn)
	if err != nil && ctx.Err() != nil {
		return canceled(ctx, err)
	}
	return err
}

// wakeChan returns the channel that the next wake(name) closes.
func (db *DB) wakeChan(name string) <-chan struct{} {
	db.mu.Lock()
	defer db.mu.Unlock()
	ch, ok := db.wakes[name]
	if !ok {
		ch = make(chan struct{})
		db.wakes[name] = ch
	}
	return ch
}

// wake wakes the receives waiting on name in this process.
func (db *DB) wake(name string) {
	db.mu.Lock()
	defer db.mu.Unlock()
	if ch, ok := db.wakes[name]; ok {
		close(ch)
		delete(db.wakes, name)
	}
}

// mapErr maps a SQLite error to an errcode; when ctx has ended the error
// is ctx's (an interrupted statement may say otherwise).
func mapErr(ctx context.Context, err error, doing string, args ...any) error {
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return canceled(ctx, fmt.Errorf(doing+": %w", append(args, err)...))
	}
	return sqlitedb.MapErr(err, doing, args...)
}

// canceled reports err, which happened while ctx ended, as ctx's error:
// SQLite may answer an interrupted statement with an error of its own.
func canceled(ctx context.Context, err error) error {
	if errors.Is(err, ctx.Err()) && errcode.Of(err) == errcode.Canceled {
		return err
	}
	return errcode.Wrap(errcode.Canceled, ctx.Err(), "%v", err)
}
