// Package sqlitejobstore is the embedded profile's job store: a jobstore.Driver
// over one SQLite file (by convention <data dir>/jobs.db), opened through
// internal/sqlitedb (WAL, synchronous=FULL, busy timeout, BEGIN IMMEDIATE).
//
// # Contract
//
// It implements the jobstore contract and passes jobstore/storetest:
//
//   - Each Create or Apply call is one IMMEDIATE transaction, so a batch costs
//     one commit (one fsync). Entries stay independent: an entry that loses
//     (id or key taken, condition failed, job missing, record too large) is
//     reported in its result and writes nothing, while the others commit.
//     The call's own error (context ended, database closed or busy, disk
//     full) means nothing of the batch was committed.
//   - A conditional write reads the record, checks job.Cond.Holds, applies
//     job.Patch.Apply and writes the record back inside that transaction, so
//     the patch semantics are exactly the job package's, and the check and
//     the write are atomic across goroutines, *sql.DB handles and processes
//     sharing the file.
//   - Writes of one Driver are serialized in process (a ctx-aware lock), so
//     contending goroutines queue instead of polling SQLite's busy handler;
//     writers in other processes wait on the file lock for up to
//     sqlitedb.BusyTimeoutMS, then the call fails with errcode.Unavailable.
//   - An acknowledged write is on disk (synchronous=FULL): it survives kill -9
//     and power loss.
//
// Errors are mapped once, here: a failed condition is
// errcode.FailedPrecondition with the record as found; a missing job
// errcode.NotFound; a taken id or key errcode.AlreadyExists naming the
// holder; a record over MaxRecordBytes errcode.InvalidArgument; use after
// Close errcode.Closed; a busy database errcode.Unavailable; a canceled
// context passes through (errcode.Canceled).
//
// # Schema
//
//	jobs(id TEXT PRIMARY KEY, status, type, key, owner, due_at, expires_at,
//	     payload BLOB, progress BLOB, result BLOB, record BLOB)
//
// record is the JSON of job.Job without its three raw JSON fields, which are
// kept byte for byte in their own columns (the JSON encoder would compact and
// re-escape them). due_at and expires_at are Unix milliseconds, NULL when the
// time is zero; key and owner are NULL when empty. Indexes:
//
//	jobs_due        (status, due_at, id) WHERE due_at IS NOT NULL   Due: a range per status
//	jobs_owned      (owner, id) WHERE status = 'RUNNING'            Owned
//	jobs_status_id  (status, id)                                     List by status
//	jobs_type_id    (type, id)                                       List by type
//	jobs_active_key UNIQUE (key) WHERE key IS NOT NULL
//	                AND status IN ('SCHEDULED','QUEUED','RUNNING')  at most one active job per key
//	jobs_expires    (expires_at) WHERE expires_at IS NOT NULL
//	                AND status IN ('SUCCEEDED','FAILED','CANCELLED') Purge
//
// A key is claimed by inserting an active job and released by the update
// that makes the job terminal, in the same statement: the partial unique
// index is the key table. List with both a status and a type reads one of
// the two list indexes and filters on the other column.
//
// # Differences from DynamoDB (dynamojobstore)
//
//   - Due, Owned and List read indexes that are strongly consistent here;
//     DynamoDB's global secondary indexes lag writes. Callers must not rely
//     on the difference (the contract allows lag).
//   - Get, Due, Owned and List read one snapshot per call.
//   - Changes within one batch are applied in order, so a later entry sees an
//     earlier entry's write to the same job; DynamoDB may apply them in any
//     order (only one of two conflicting entries can win in either).
//   - Due compares whole milliseconds: a job is due when DueAt truncated to
//     the millisecond is before `before` truncated to the millisecond, so a
//     job is never reported early and at most 1 ms late.
//   - Item size: DynamoDB refuses items over 400 KB. For parity this adapter
//     refuses records whose encoding (JSON record plus payload, progress and
//     result bytes) exceeds MaxRecordBytes, with errcode.InvalidArgument,
//     although SQLite could store them. Payloads and results larger than
//     that belong in the blob store (PayloadRef, ResultRef).
//   - Expired terminal records are hidden by jobstore.Store on read in both
//     profiles; DynamoDB deletes them by TTL eventually, this adapter when
//     Purge is called (by the reaper).
//   - Times are stored in UTC with nanosecond precision (DynamoDB: as the
//     adapter encodes them; the contract promises milliseconds). String
//     fields are stored as UTF-8; invalid sequences become U+FFFD.
package sqlitejobstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/jobfleet/jobfleet/pkg/clock"
	"github.com/jobfleet/jobfleet/pkg/errcode"
	"github.com/jobfleet/jobfleet/pkg/internal/sqlitedb"
	"github.com/jobfleet/jobfleet/pkg/job"
	"github.com/jobfleet/jobfleet/pkg/jobstore"
)

// MaxRecordBytes is the largest encoded job record accepted: DynamoDB's item
// size limit (400 KB = 409,600 bytes), enforced here for parity.
const MaxRecordBytes = 400 << 10

// Options configure Open. Nil options mean defaults.
type Options struct {
	// Clock is the Store's clock, for hiding records past their retention;
	// default real time.
	Clock clock.Clock
	// MaxOpenConns caps the connections of the database handle; default 8.
	MaxOpenConns int
}

// Open opens (creating if needed) the job database at path and returns a
// Store over it.
func Open(ctx context.Context, path string, opts *Options) (*jobstore.Store, error) {
	d, err := OpenDriver(ctx, path, opts)
	if err != nil {
		return nil, err
	}
	var c clock.Clock
	if opts != nil {
		c = opts.Clock
	}
	return jobstore.New(d, &jobstore.Options{Clock: c}), nil
}

// Driver is the SQLite job store driver. Its methods are safe for concurrent
// use.
type Driver struct {
	db     *sql.DB
	path   string
	stmts  statements
	write  chan struct{} // holds one token; taken for the length of a write transaction
	closed atomic.Bool
}

var _ jobstore.Driver = (*Driver)(nil)

// OpenDriver opens (creating if needed) the job database at path. Most
// callers want Open; the Driver is for adapter-specific calls such as Purge.
func OpenDriver(ctx context.Context, path string, opts *Options) (*Driver, error) {
	if opts == nil {
		opts = &Options{}
	}
	db, err := sqlitedb.Open(ctx, path, schema)
	if err != nil {
		return nil, err
	}
	conns := opts.MaxOpenConns
	if conns <= 0 {
		conns = 8
	}
	db.SetMaxOpenConns(conns)
	db.SetMaxIdleConns(conns)
	d := &Driver{db: db, path: path, write: make(chan struct{}, 1)}
	d.write <- struct{}{}
	if err := d.stmts.prepare(ctx, db); err != nil {
		d.stmts.close()
		db.Close()
		return nil, fmt.Errorf("open job store %s: %w", path, err)
	}
	return d, nil
}

const (
	activeStatuses   = `('SCHEDULED','QUEUED','RUNNING')`
	terminalStatuses = `('SUCCEEDED','FAILED','CANCELLED')`
)

const schema = `
CREATE TABLE IF NOT EXISTS jobs (
	id         TEXT PRIMARY KEY,
	status     TEXT NOT NULL,
	type       TEXT NOT NULL,
	key        TEXT,
	owner      TEXT,
	due_at     INTEGER,
	expires_at INTEGER,
	payload    BLOB,
	progress   BLOB,
	result     BLOB,
	record     BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_due ON jobs(status, due_at, id) WHERE due_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_owned ON jobs(owner, id) WHERE status = 'RUNNING';
CREATE INDEX IF NOT EXISTS jobs_status_id ON jobs(status, id);
CREATE INDEX IF NOT EXISTS jobs_type_id ON jobs(type, id);
CREATE UNIQUE INDEX IF NOT EXISTS jobs_active_key ON jobs(key)
	WHERE key IS NOT NULL AND status IN ` + activeStatuses + `;
CREATE TABLE IF NOT EXISTS leases (
	name     TEXT PRIMARY KEY,
	holder   TEXT NOT NULL,
	until_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_expires ON jobs(expires_at)
	WHERE expires_at IS NOT NULL AND status IN ` + terminalStatuses + `;
`

// The statements. Queries select recordCols and decode them with scanJob.
const (
	recordCols = `record, payload, progress, result`

	qInsert = `INSERT INTO jobs (id, status, type, key, owner, due_at, expires_at, payload, progress, result, record)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`
	qUpdate = `UPDATE jobs SET status = ?, owner = ?, due_at = ?, expires_at = ?, progress = ?, result = ?, record = ?
		WHERE id = ?`
	qGet       = `SELECT ` + recordCols + ` FROM jobs WHERE id = ?`
	qKeyHolder = `SELECT ` + recordCols + ` FROM jobs
		WHERE key = ? AND status IN ` + activeStatuses
	qDue = `SELECT ` + recordCols + ` FROM jobs
		WHERE status = ? AND due_at < ? ORDER BY due_at, id LIMIT ?`
	qOwned = `SELECT ` + recordCols + ` FROM jobs
		WHERE owner = ? AND status = 'RUNNING' ORDER BY id LIMIT ?`
	// List pages walk ids downwards from the cursor; the first page starts
	// above every id (listTop sorts after every ULID character).
	qList         = `SELECT ` + recordCols + ` FROM jobs WHERE id < ? ORDER BY id DESC LIMIT ?`
	qListStatus   = `SELECT ` + recordCols + ` FROM jobs WHERE status = ? AND id < ? ORDER BY id DESC LIMIT ?`
	qListType     = `SELECT ` + recordCols + ` FROM jobs WHERE type = ? AND id < ? ORDER BY id DESC LIMIT ?`
	qListStatType = `SELECT ` + recordCols + ` FROM jobs WHERE status = ? AND type = ? AND id < ? ORDER BY id DESC LIMIT ?`
	// Without statistics the planner would walk the status index.
	qPurge = `DELETE FROM jobs WHERE rowid IN (SELECT rowid FROM jobs INDEXED BY jobs_expires
		WHERE expires_at < ? AND status IN ` + terminalStatuses + ` LIMIT ?)`

	listTop = "~"
)

type statements struct {
	insert, update, get, keyHolder, due, owned *sql.Stmt
	list, listStatus, listType, listStatType   *sql.Stmt
}

func (s *statements) all() []**sql.Stmt {
	return []**sql.Stmt{&s.insert, &s.update, &s.get, &s.keyHolder, &s.due, &s.owned,
		&s.list, &s.listStatus, &s.listType, &s.listStatType}
}

var queries = []string{qInsert, qUpdate, qGet, qKeyHolder, qDue, qOwned,
	qList, qListStatus, qListType, qListStatType}

func (s *statements) prepare(ctx context.Context, db *sql.DB) error {
	for i, p := range s.all() {
		st, err := db.PrepareContext(ctx, queries[i])
		if err != nil {
			return sqlitedb.MapErr(err, "prepare %q", queries[i])
		}
		*p = st
	}
	return nil
}

func (s *statements) close() {
	for _, p := range s.all() {
		if *p != nil {
			(*p).Close()
		}
	}
}

func (d *Driver) check() error {
	if d.closed.Load() {
		return errcode.New(errcode.Closed, "job store %s is closed", d.path)
	}
	return nil
}

// inWrite runs fn in one IMMEDIATE transaction, holding the driver's write
// lock so goroutines of this process queue here rather than on SQLite's busy
// handler. fn's errors abort the whole call.
func (d *Driver) inWrite(ctx context.Context, fn func(*sql.Tx) error) error {
	if err := d.check(); err != nil {
		return err
	}
	select {
	case <-d.write:
	case <-ctx.Done():
		return fmt.Errorf("wait for the write lock: %w", ctx.Err())
	}
	defer func() { d.write <- struct{}{} }()
	return d.closedErr(sqlitedb.InTx(ctx, d.db, fn))
}

// closedErr reports an error that happened because Close ran during the
// call as errcode.Closed.
func (d *Driver) closedErr(err error) error {
	if err != nil && d.closed.Load() && errcode.Of(err) != errcode.Closed {
		return errcode.Wrap(errcode.Closed, err, "job store %s is closed", d.path)
	}
	return err
}

// Create stores new jobs in one transaction; see jobstore.Driver.
func (d *Driver) Create(ctx context.Context, jobs []*job.Job) ([]jobstore.CreateResult, error) {
	out := make([]jobstore.CreateResult, len(jobs))
	err := d.inWrite(ctx, func(tx *sql.Tx) error {
		insert := tx.StmtContext(ctx, d.stmts.insert)
		get := tx.StmtContext(ctx, d.stmts.get)
		holder := tx.StmtContext(ctx, d.stmts.keyHolder)
		for i, in := range jobs {
			j := *in
			j.History = slices.Clone(in.History)
			toUTC(&j)
			rec, err := encode(&j)
			if err != nil {
				out[i].Err = err
				continue
			}
			res, err := insert.ExecContext(ctx, j.ID, string(j.Status), j.Type, nullString(j.Key), nullString(j.Owner),
				nullMillis(j.DueAt), nullMillis(j.ExpiresAt), nullBytes(j.Payload), nullBytes(j.Progress), nullBytes(j.Result), rec)
			if err != nil {
				return sqlitedb.MapErr(err, "create job %s", j.ID)
			}
			if n, err := res.RowsAffected(); err != nil {
				return sqlitedb.MapErr(err, "create job %s", j.ID)
			} else if n == 1 {
				continue
			}
			// The insert hit the primary key or the active-key index.
			// The id takes precedence: a retried submission is the same job.
			found, err := scanJob(get.QueryRowContext(ctx, j.ID))
			if err == nil {
				out[i] = taken(found, "create job %s: id exists", j.ID)
				continue
			}
			if errcode.Of(err) == errcode.Internal {
				out[i].Err = fmt.Errorf("create job %s: read existing job: %w", j.ID, err)
				continue
			}
			if !errors.Is(err, sql.ErrNoRows) {
				return sqlitedb.MapErr(err, "create job %s: read existing job", j.ID)
			}
			found, err = scanJob(holder.QueryRowContext(ctx, j.Key))
			if errcode.Of(err) == errcode.Internal {
				out[i].Err = fmt.Errorf("create job %s: read holder of key %q: %w", j.ID, j.Key, err)
				continue
			}
			if err != nil {
				return sqlitedb.MapErr(err, "create job %s: read holder of key %q", j.ID, j.Key)
			}
			out[i] = taken(found, "create job %s: key %q is held by job %s", j.ID, j.Key, found.ID)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func taken(holder *job.Job, format string, args ...any) jobstore.CreateResult {
	return jobstore.CreateResult{
		Err:               errcode.New(errcode.AlreadyExists, format, args...),
		Holder:            holder.ID,
		HolderPayloadHash: holder.PayloadHash,
	}
}

// Get returns the job with id; see jobstore.Driver.
func (d *Driver) Get(ctx context.Context, id string) (*job.Job, error) {
	if err := d.check(); err != nil {
		return nil, err
	}
	j, err := scanJob(d.stmts.get.QueryRowContext(ctx, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, errcode.New(errcode.NotFound, "job %s not found", id)
	}
	if err != nil {
		return nil, d.closedErr(sqlitedb.MapErr(err, "get job %s", id))
	}
	return j, nil
}

// Apply performs changes in one transaction, each a conditional write; see
// jobstore.Driver.
func (d *Driver) Apply(ctx context.Context, changes []job.Change) ([]jobstore.ChangeResult, error) {
	out := make([]jobstore.ChangeResult, len(changes))
	err := d.inWrite(ctx, func(tx *sql.Tx) error {
		get := tx.StmtContext(ctx, d.stmts.get)
		update := tx.StmtContext(ctx, d.stmts.update)
		for i, c := range changes {
			j, err := scanJob(get.QueryRowContext(ctx, c.ID))
			switch {
			case errors.Is(err, sql.ErrNoRows):
				out[i].Err = errcode.New(errcode.NotFound, "%s job %s: not found", c.Event, c.ID)
				continue
			case errcode.Of(err) == errcode.Internal:
				out[i].Err = fmt.Errorf("%s job %s: %w", c.Event, c.ID, err)
				continue
			case err != nil:
				return sqlitedb.MapErr(err, "%s job %s: read", c.Event, c.ID)
			}
			if !c.If.Holds(j) {
				out[i] = jobstore.ChangeResult{Job: j, Err: jobstore.ConditionFailed(c, j)}
				continue
			}
			c.Set.Apply(j)
			toUTC(j)
			rec, err := encode(j)
			if err != nil {
				out[i].Err = fmt.Errorf("%s job %s: %w", c.Event, c.ID, err)
				continue
			}
			if _, err := update.ExecContext(ctx, string(j.Status), nullString(j.Owner), nullMillis(j.DueAt),
				nullMillis(j.ExpiresAt), nullBytes(j.Progress), nullBytes(j.Result), rec, j.ID); err != nil {
				if isConstraint(err) {
					// Only the active-key index can refuse an update, and
					// no legal transition makes an inactive job active.
					out[i].Err = errcode.Wrap(errcode.Internal, err, "%s job %s", c.Event, c.ID)
					continue
				}
				return sqlitedb.MapErr(err, "%s job %s: write", c.Event, c.ID)
			}
			out[i].Job = j
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Due returns up to limit jobs in status whose DueAt is before `before`
// (whole milliseconds), earliest first; see jobstore.Driver.
func (d *Driver) Due(ctx context.Context, status job.Status, before time.Time, limit int) ([]*job.Job, error) {
	if err := d.check(); err != nil {
		return nil, err
	}
	return d.query(ctx, d.stmts.due, "due %s jobs", []any{string(status), before.UnixMilli(), limit}, status)
}

// Owned returns up to limit RUNNING jobs of owner, by id; see jobstore.Driver.
func (d *Driver) Owned(ctx context.Context, owner string, limit int) ([]*job.Job, error) {
	if err := d.check(); err != nil {
		return nil, err
	}
	return d.query(ctx, d.stmts.owned, "jobs owned by %s", []any{owner, limit}, owner)
}

// List returns one page of jobs, newest first. The cursor is the id of the
// last job of the previous page; anything else is errcode.InvalidArgument.
func (d *Driver) List(ctx context.Context, q jobstore.ListQuery) (jobstore.Page, error) {
	if err := d.check(); err != nil {
		return jobstore.Page{}, err
	}
	from := listTop
	if q.Cursor != "" {
		if !job.ValidID(q.Cursor) {
			return jobstore.Page{}, errcode.New(errcode.InvalidArgument, "list jobs: invalid cursor %q", q.Cursor)
		}
		from = q.Cursor
	}
	// Read one more than asked, to know whether there is a next page.
	var st *sql.Stmt
	var args []any
	switch {
	case q.Status != job.None && q.Type != "":
		st, args = d.stmts.listStatType, []any{string(q.Status), q.Type, from, q.Limit + 1}
	case q.Status != job.None:
		st, args = d.stmts.listStatus, []any{string(q.Status), from, q.Limit + 1}
	case q.Type != "":
		st, args = d.stmts.listType, []any{q.Type, from, q.Limit + 1}
	default:
		st, args = d.stmts.list, []any{from, q.Limit + 1}
	}
	jobs, err := d.query(ctx, st, "list jobs", args)
	if err != nil {
		return jobstore.Page{}, err
	}
	var p jobstore.Page
	if len(jobs) > q.Limit {
		jobs = jobs[:q.Limit]
		p.Next = jobs[len(jobs)-1].ID
	}
	p.Jobs = jobs
	return p, nil
}

func (d *Driver) query(ctx context.Context, st *sql.Stmt, doing string, args []any, doingArgs ...any) ([]*job.Job, error) {
	jobs, err := d.queryRows(ctx, st, doing, args, doingArgs...)
	return jobs, d.closedErr(err)
}

func (d *Driver) queryRows(ctx context.Context, st *sql.Stmt, doing string, args []any, doingArgs ...any) ([]*job.Job, error) {
	rows, err := st.QueryContext(ctx, args...)
	if err != nil {
		return nil, sqlitedb.MapErr(err, doing, doingArgs...)
	}
	defer rows.Close()
	var out []*job.Job
	for rows.Next() {
		j, err := scanJob(rows)
		if err != nil {
			return nil, sqlitedb.MapErr(err, doing, doingArgs...)
		}
		out = append(out, j)
	}
	if err := rows.Err(); err != nil {
		return nil, sqlitedb.MapErr(err, doing, doingArgs...)
	}
	return out, nil
}

// Purge deletes up to limit terminal records whose ExpiresAt is before now
// (whole milliseconds) and returns how many it deleted. The Store hides such
// records already; Purge reclaims their space. It is one transaction.
func (d *Driver) Purge(ctx context.Context, now time.Time, limit int) (int, error) {
	if limit <= 0 {
		return 0, errcode.New(errcode.InvalidArgument, "purge jobs: limit must be positive")
	}
	var n int64
	err := d.inWrite(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, qPurge, now.UnixMilli(), limit)
		if err != nil {
			return sqlitedb.MapErr(err, "purge jobs")
		}
		n, err = res.RowsAffected()
		return sqlitedb.MapErr(err, "purge jobs")
	})
	return int(n), err
}

var _ jobstore.Leaser = (*Driver)(nil)

// AcquireLease implements jobstore.Leaser with one conditional upsert.
func (d *Driver) AcquireLease(ctx context.Context, name, holder string, now, until time.Time) (bool, error) {
	var n int64
	err := d.inWrite(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO leases(name, holder, until_ms) VALUES (?, ?, ?)
			ON CONFLICT(name) DO UPDATE SET holder = excluded.holder, until_ms = excluded.until_ms
			WHERE leases.until_ms <= ? OR leases.holder = excluded.holder`,
			name, holder, until.UnixMilli(), now.UnixMilli())
		if err != nil {
			return sqlitedb.MapErr(err, "acquire lease %s", name)
		}
		n, err = res.RowsAffected()
		return sqlitedb.MapErr(err, "acquire lease %s", name)
	})
	return n == 1, err
}

// ReleaseLease implements jobstore.Leaser.
func (d *Driver) ReleaseLease(ctx context.Context, name, holder string) error {
	return d.inWrite(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `DELETE FROM leases WHERE name = ? AND holder = ?`, name, holder)
		return sqlitedb.MapErr(err, "release lease %s", name)
	})
}

// Close closes the database handle. Calls after Close fail with
// errcode.Closed; closing twice is fine.
func (d *Driver) Close() error {
	if d.closed.Swap(true) {
		return nil
	}
	d.stmts.close()
	if err := d.db.Close(); err != nil {
		return fmt.Errorf("close job store %s: %w", d.path, err)
	}
	return nil
}

// scanner is a *sql.Row or *sql.Rows.
type scanner interface{ Scan(dest ...any) error }

// scanJob decodes recordCols. A record that does not decode is
// errcode.Internal (corrupt); sql.ErrNoRows passes through.
func scanJob(s scanner) (*job.Job, error) {
	var rec, payload, progress, result []byte
	if err := s.Scan(&rec, &payload, &progress, &result); err != nil {
		return nil, err
	}
	j := new(job.Job)
	if err := json.Unmarshal(rec, j); err != nil {
		return nil, errcode.Wrap(errcode.Internal, err, "decode job record")
	}
	j.Payload, j.Progress, j.Result = rawOrNil(payload), rawOrNil(progress), rawOrNil(result)
	return j, nil
}

func rawOrNil(b []byte) json.RawMessage {
	if len(b) == 0 {
		return nil
	}
	return b
}

// encode returns the record column for j: its JSON without the raw fields,
// which have their own columns. The whole encoding must fit MaxRecordBytes.
func encode(j *job.Job) ([]byte, error) {
	c := *j
	c.Payload, c.Progress, c.Result = nil, nil, nil
	rec, err := json.Marshal(&c)
	if err != nil {
		return nil, errcode.Wrap(errcode.InvalidArgument, err, "encode job %s", j.ID)
	}
	if n := len(rec) + len(j.Payload) + len(j.Progress) + len(j.Result); n > MaxRecordBytes {
		return nil, errcode.New(errcode.InvalidArgument,
			"job %s: record is %d bytes; the limit is %d (keep large payloads and results in the blob store)",
			j.ID, n, MaxRecordBytes)
	}
	return rec, nil
}

// toUTC puts every time in j in UTC (and drops monotonic readings).
func toUTC(j *job.Job) {
	for _, t := range []*time.Time{&j.LeaseUntil, &j.RunAt, &j.ResendAt, &j.DueAt, &j.StartBy,
		&j.CreatedAt, &j.UpdatedAt, &j.StartedAt, &j.FinishedAt, &j.ExpiresAt} {
		*t = utc(*t)
	}
	for i := range j.History {
		j.History[i].StartedAt = utc(j.History[i].StartedAt)
		j.History[i].EndedAt = utc(j.History[i].EndedAt)
	}
}

func utc(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC()
}

func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func nullMillis(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixMilli()
}

func nullBytes(b []byte) any {
	if len(b) == 0 {
		return nil
	}
	return b
}

func isConstraint(err error) bool {
	var se *sqlite.Error
	return errors.As(err, &se) && se.Code()&0xff == sqlite3.SQLITE_CONSTRAINT
}
