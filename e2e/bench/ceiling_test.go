package bench

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/stretchr/testify/require"

	"github.com/jobfleet/jobfleet/pkg/config"
	"github.com/jobfleet/jobfleet/pkg/job"
	_ "github.com/jobfleet/jobfleet/pkg/jobstore/sqlitejobstore" // registers the "sqlite" database/sql driver (modernc.org/sqlite)
	"github.com/jobfleet/jobfleet/pkg/metrics"
	"github.com/jobfleet/jobfleet/pkg/profile"
	"github.com/jobfleet/jobfleet/pkg/queue"
)

// The storage ceiling: the SQLite work the protocol does per job, with
// nothing else. Its statements are those of sqlitejobstore and sqlitequeue
// (as of this commit), run on databases those adapters created, through
// handles opened with the same settings as internal/sqlitedb (WAL,
// synchronous=FULL, busy timeout, BEGIN IMMEDIATE, 8 connections), with
// writes serialized per handle as both adapters serialize them. Records
// are encoded once, before the clock starts, from a real job taken through
// job.Policy: queued, running and succeeded, the sizes the adapters write.

const (
	sqlJobInsert = `INSERT INTO jobs (id, status, type, key, owner, due_at, expires_at, payload, progress, result, record)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`
	sqlJobGet    = `SELECT record, payload, progress, result FROM jobs WHERE id = ?`
	sqlJobUpdate = `UPDATE jobs SET status = ?, owner = ?, due_at = ?, expires_at = ?, progress = ?, result = ?, record = ?
		WHERE id = ?`

	sqlAnyVisible = `SELECT EXISTS (SELECT 1 FROM messages WHERE queue = ? AND visible_at <= ?)`
	sqlMsgInsert  = `INSERT INTO messages (id, queue, sent_at, visible_at) VALUES (?, ?, ?, ?) RETURNING seq`
	sqlBodyInsert = `INSERT INTO bodies (seq, body, attributes) VALUES (?, ?, ?)`
	sqlMoveDead   = `
		UPDATE messages SET queue = ?1, visible_at = ?2, received_at = NULL, token = NULL
		WHERE seq IN (
			SELECT seq FROM messages
			WHERE queue = ?3 AND visible_at <= ?2 AND receive_count >= ?4
			ORDER BY visible_at, seq LIMIT ?5)`
	sqlClaim = `
		UPDATE messages SET
			visible_at = ?1 + ?2,
			receive_count = receive_count + 1,
			received_at = ?1,
			token = lower(hex(randomblob(16)))
		WHERE seq IN (
			SELECT seq FROM messages
			WHERE queue = ?3 AND visible_at <= ?1 AND receive_count < ?4
			ORDER BY visible_at, seq LIMIT ?5)
		RETURNING seq, id, sent_at, receive_count, token`
	sqlMsgDelete = `DELETE FROM messages WHERE id = ? AND queue = ? AND token = ?`

	createBatch = 100 // jobstore.MaxBatch: jobs per Create transaction
)

var sqlBodies = `SELECT seq, body, attributes FROM bodies WHERE seq IN (?` + strings.Repeat(", ?", queue.MaxBatch-1) + `) ORDER BY seq`

// sqlHandle is one process's pool of connections to one database file.
type sqlHandle struct {
	db    *sql.DB
	write sync.Mutex // the adapters' in-process write lock
	st    map[string]*sql.Stmt
}

func openSQL(t *testing.T, path, sync string, stmts ...string) *sqlHandle {
	t.Helper()
	q := url.Values{}
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous("+sync+")")
	q.Add("_pragma", "busy_timeout(30000)")
	q.Add("_pragma", "foreign_keys(ON)")
	q.Set("_txlock", "immediate")
	db, err := sql.Open("sqlite", "file:"+(&url.URL{Path: path}).EscapedPath()+"?"+q.Encode())
	require.NoError(t, err)
	db.SetMaxOpenConns(8)
	db.SetMaxIdleConns(8)
	h := &sqlHandle{db: db, st: map[string]*sql.Stmt{}}
	t.Cleanup(func() {
		for _, s := range h.st {
			s.Close()
		}
		db.Close()
	})
	for _, s := range stmts {
		h.st[s], err = db.PrepareContext(t.Context(), s)
		require.NoError(t, err, s)
	}
	return h
}

// tx runs fn in one write transaction, after this handle's other writers.
func (h *sqlHandle) tx(ctx context.Context, fn func(tx *sql.Tx, st func(string) *sql.Stmt) error) error {
	h.write.Lock()
	defer h.write.Unlock()
	tx, err := h.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx, func(s string) *sql.Stmt { return tx.StmtContext(ctx, h.st[s]) }); err != nil {
		return errors.Join(err, tx.Rollback())
	}
	return tx.Commit()
}

// ceilNode is one process's handles on jobs.db and queue.db.
type ceilNode struct {
	jobs, queue *sqlHandle
}

func openCeilNode(t *testing.T, dir string, m ceilingMode) *ceilNode {
	return &ceilNode{
		jobs: openSQL(t, filepath.Join(dir, "jobs.db"), m.sync(), sqlJobInsert, sqlJobGet, sqlJobUpdate),
		queue: openSQL(t, filepath.Join(dir, "queue.db"), m.sync(), sqlAnyVisible, sqlMsgInsert, sqlBodyInsert,
			sqlMoveDead, sqlClaim, sqlBodies, sqlMsgDelete),
	}
}

// ceilingMode varies the ceiling from the protocol as it is, to measure
// what a change would allow.
type ceilingMode struct {
	// batched: the finishes of one receive's jobs commit in one transaction,
	// and their deletes in another (group commit), instead of one each.
	batched bool
	// noSync: synchronous=NORMAL (a WAL commit does not wait for the disk;
	// not durable across power loss) instead of FULL.
	noSync bool
	// noDeadScan: receives skip the dead-letter move, whose scan reads
	// every visible message of the queue (the index has receive_count
	// after visible_at), so its cost grows with the backlog.
	noDeadScan bool
}

func (m ceilingMode) sync() string {
	if m.noSync {
		return "NORMAL"
	}
	return "FULL"
}

// records are the column values a no-op job's three writes store.
type records struct {
	payload, queued, running, succeeded []byte
	queuedDue, runningDue, expires      int64
	workQueue, dlq                      string
	visibilityMS                        int64
	maxReceives                         int
}

// encodeRecord is sqlitejobstore's record column: the job's JSON without
// its raw JSON fields.
func encodeRecord(t *testing.T, j *job.Job) []byte {
	c := *j
	c.Payload, c.Progress, c.Result = nil, nil, nil
	b, err := json.Marshal(&c)
	require.NoError(t, err)
	return b
}

func noopRecords(t *testing.T, cfg config.Config) *records {
	p := cfg.Policy()
	now := time.Now()
	sub := job.Submission{Type: "echo", Payload: json.RawMessage(`{"n":1234}`)}
	j := p.New(&sub, cfg.Limits(), job.NewID(now), now)
	r := &records{payload: j.Payload, queued: encodeRecord(t, j), queuedDue: j.DueAt.UnixMilli(),
		workQueue: profile.WorkQueue, dlq: profile.WorkQueue + profile.DLQSuffix,
		visibilityMS: cfg.Visibility.Milliseconds(), maxReceives: cfg.MaxReceives}
	c := p.Start(job.Message{ID: j.ID}, "bench/1", now)
	c.Set.Apply(j)
	r.running, r.runningDue = encodeRecord(t, j), j.DueAt.UnixMilli()
	c = p.Finish(j, now, job.End{Outcome: job.OutcomeSucceeded, Result: j.Payload})
	c.Set.Apply(j)
	require.Equal(t, job.Succeeded, j.Status)
	r.succeeded, r.expires = encodeRecord(t, j), j.ExpiresAt.UnixMilli()
	return r
}

// ceilingRun is a data directory with the storage ceiling's jobs in it.
type ceilingRun struct {
	dir  string
	mode ceilingMode
	rec  *records
	n    int
}

// ceilingInsert makes a fresh data directory (the adapters make the schema
// and the queues) and times the storage work of submitting p.burnJobs jobs
// in batches of p.burnBatch: a create transaction per 100 jobs, a send
// transaction per 10 messages.
func ceilingInsert(t *testing.T, p params, mode ceilingMode) (*ceilingRun, time.Duration) {
	t.Helper()
	ctx := t.Context()
	dir := t.TempDir()
	cfg := localConfig(t, dir, nil)
	b, err := profile.Open(ctx, cfg, metrics.New())
	require.NoError(t, err)
	require.NoError(t, b.Close())
	rec := noopRecords(t, cfg)

	n := p.burnJobs
	now := time.Now()
	ids, msgIDs, bodies := make([]string, n), make([]string, n), make([][]byte, n)
	for i := range ids {
		ids[i] = job.NewID(now)
		msgIDs[i] = ulid.Make().String()
		bodies[i] = job.Message{ID: ids[i]}.Encode()
	}
	disp := openCeilNode(t, dir, mode)
	start := time.Now()
	for lo := 0; lo < n; lo += p.burnBatch {
		hi := min(lo+p.burnBatch, n)
		for c := lo; c < hi; c += createBatch {
			require.NoError(t, disp.create(ctx, ids[c:min(c+createBatch, hi)], rec))
		}
		for c := lo; c < hi; c += queue.MaxBatch {
			e := min(c+queue.MaxBatch, hi)
			require.NoError(t, disp.send(ctx, msgIDs[c:e], bodies[c:e], rec))
		}
	}
	return &ceilingRun{dir: dir, mode: mode, rec: rec, n: n}, time.Since(start)
}

// drain times the storage work of draining the run's jobs with workers
// shaped like c.
func (cr *ceilingRun) drain(t *testing.T, c burnConfig) time.Duration {
	t.Helper()
	nodes := make([]*ceilNode, c.workers)
	for i := range nodes {
		if c.shared && i > 0 {
			nodes[i] = nodes[0]
			continue
		}
		nodes[i] = openCeilNode(t, cr.dir, cr.mode)
	}
	var finished atomic.Int64
	errs := make(chan error, len(nodes))
	start := time.Now()
	for i, nd := range nodes {
		go func() {
			errs <- nd.poll(t.Context(), c.conc, fmt.Sprintf("bench/%d", i+1), cr.rec, cr.mode, &finished)
		}()
	}
	for range nodes {
		require.NoError(t, <-errs)
	}
	d := time.Since(start)
	require.EqualValues(t, cr.n, finished.Load())
	return d
}

// create is a Create of a batch: one transaction, an insert per job.
func (nd *ceilNode) create(ctx context.Context, ids []string, r *records) error {
	return nd.jobs.tx(ctx, func(_ *sql.Tx, st func(string) *sql.Stmt) error {
		ins := st(sqlJobInsert)
		for _, id := range ids {
			res, err := ins.ExecContext(ctx, id, string(job.Queued), "echo", nil, nil, r.queuedDue, nil, r.payload, nil, nil, r.queued)
			if err != nil {
				return err
			}
			if n, err := res.RowsAffected(); err != nil || n != 1 {
				return fmt.Errorf("insert %s: %d rows, %v", id, n, err)
			}
		}
		return nil
	})
}

// send is a Send of up to 10 messages: one transaction.
func (nd *ceilNode) send(ctx context.Context, ids []string, bodies [][]byte, r *records) error {
	return nd.queue.tx(ctx, func(_ *sql.Tx, st func(string) *sql.Stmt) error {
		msg, body := st(sqlMsgInsert), st(sqlBodyInsert)
		now := time.Now().UnixMilli()
		for i, id := range ids {
			var seq int64
			if err := msg.QueryRowContext(ctx, id, r.workQueue, now, now).Scan(&seq); err != nil {
				return err
			}
			if _, err := body.ExecContext(ctx, seq, bodies[i], nil); err != nil {
				return err
			}
		}
		return nil
	})
}

// claimed is a received message.
type claimed struct {
	id, token, jobID string
}

// receive is a Receive of up to max messages: the cheap read, then one
// transaction that moves dead letters, claims and reads the bodies.
func (nd *ceilNode) receive(ctx context.Context, limit int, r *records, deadScan bool) ([]claimed, error) {
	now := time.Now().UnixMilli()
	var found bool
	if err := nd.queue.st[sqlAnyVisible].QueryRowContext(ctx, r.workQueue, now).Scan(&found); err != nil || !found {
		return nil, err
	}
	var out []claimed
	err := nd.queue.tx(ctx, func(_ *sql.Tx, st func(string) *sql.Stmt) error {
		if deadScan {
			if _, err := st(sqlMoveDead).ExecContext(ctx, r.dlq, now, r.workQueue, r.maxReceives, 100); err != nil {
				return err
			}
		}
		rows, err := st(sqlClaim).QueryContext(ctx, now, r.visibilityMS, r.workQueue, r.maxReceives, limit)
		if err != nil {
			return err
		}
		args := make([]any, queue.MaxBatch)
		for i := range args {
			args[i] = 0
		}
		bySeq := map[int64]int{}
		for rows.Next() {
			var seq, sentAt, count int64
			var c claimed
			if err := rows.Scan(&seq, &c.id, &sentAt, &count, &c.token); err != nil {
				rows.Close()
				return err
			}
			args[len(out)] = seq
			bySeq[seq] = len(out)
			out = append(out, c)
		}
		if err := errors.Join(rows.Err(), rows.Close()); err != nil || len(out) == 0 {
			return err
		}
		rows, err = st(sqlBodies).QueryContext(ctx, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var seq int64
			var body []byte
			var attrs sql.NullString
			if err := rows.Scan(&seq, &body, &attrs); err != nil {
				return err
			}
			// The body is {"id":"<26 characters>","attempt":0}.
			out[bySeq[seq]].jobID = string(body[7:33])
		}
		return rows.Err()
	})
	return out, err
}

// update is a conditional write's storage work: read the record, write it.
func update(ctx context.Context, st func(string) *sql.Stmt, id string, args ...any) error {
	var rec, payload, progress, result []byte
	if err := st(sqlJobGet).QueryRowContext(ctx, id).Scan(&rec, &payload, &progress, &result); err != nil {
		return fmt.Errorf("read %s: %w", id, err)
	}
	_, err := st(sqlJobUpdate).ExecContext(ctx, append(args, id)...)
	return err
}

// poll is one worker: it receives up to its free slots, starts the batch
// in one transaction, and finishes each job (one transaction) and deletes
// its message (another) in a goroutine per job — or, batched, the whole
// receive's finishes in one transaction and deletes in another. It returns
// when nothing is visible: every message was sent before the drain began.
func (nd *ceilNode) poll(ctx context.Context, conc int, owner string, r *records, mode ceilingMode, finished *atomic.Int64) error {
	slots := make(chan struct{}, conc)
	var jobs sync.WaitGroup
	var mu sync.Mutex
	var jobErr error
	defer jobs.Wait()
	for {
		slots <- struct{}{}
		k := 1
		for k < queue.MaxBatch {
			select {
			case slots <- struct{}{}:
				k++
				continue
			default:
			}
			break
		}
		msgs, err := nd.receive(ctx, k, r, !mode.noDeadScan)
		for range k - len(msgs) {
			<-slots
		}
		if err != nil || len(msgs) == 0 {
			jobs.Wait()
			mu.Lock()
			defer mu.Unlock()
			return errors.Join(err, jobErr)
		}
		err = nd.jobs.tx(ctx, func(_ *sql.Tx, st func(string) *sql.Stmt) error {
			for _, m := range msgs {
				if err := update(ctx, st, m.jobID, string(job.Running), owner, r.runningDue, nil, nil, nil, r.running); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		groups := [][]claimed{msgs}
		if !mode.batched {
			groups = groups[:0]
			for i := range msgs {
				groups = append(groups, msgs[i:i+1])
			}
		}
		for _, g := range groups {
			jobs.Go(func() {
				defer func() {
					for range g {
						<-slots
					}
				}()
				err := nd.jobs.tx(ctx, func(_ *sql.Tx, st func(string) *sql.Stmt) error {
					for _, m := range g {
						if err := update(ctx, st, m.jobID, string(job.Succeeded), nil, nil, r.expires, nil, r.payload, r.succeeded); err != nil {
							return err
						}
					}
					return nil
				})
				if err == nil {
					err = nd.queue.tx(ctx, func(_ *sql.Tx, st func(string) *sql.Stmt) error {
						for _, m := range g {
							if _, err := st(sqlMsgDelete).ExecContext(ctx, m.id, r.workQueue, m.token); err != nil {
								return err
							}
						}
						return nil
					})
				}
				if err != nil {
					mu.Lock()
					jobErr = errors.Join(jobErr, err)
					mu.Unlock()
					return
				}
				finished.Add(int64(len(g)))
			})
		}
	}
}
