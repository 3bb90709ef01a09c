package procfleet

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/jobfleet/jobfleet/pkg/fleet"
	"github.com/jobfleet/jobfleet/pkg/internal/sqlitedb"
)

// The registry is one SQLite table shared by every process that opens the
// same file. Every state change is one conditional UPDATE … RETURNING, so
// of several processes noticing the same change exactly one records it and
// publishes its event.
//
// published is the highest version whose event was sent or is being sent:
// a state change claims its own event by setting published = version in
// the same statement; a failed send sets it back, and the next List (in any
// process) claims and sends it again.
const schema = `
CREATE TABLE IF NOT EXISTS workers (
	id               TEXT PRIMARY KEY,  -- host/pid
	cluster          TEXT NOT NULL,
	host             TEXT NOT NULL,
	pid              INTEGER NOT NULL,
	proc_start       INTEGER NOT NULL,  -- start time in clock ticks after boot; 0 if unknown
	boot_id          TEXT NOT NULL,
	owner_pid        INTEGER NOT NULL,  -- pid of the process that waits for it; 0 once none does
	owner_start      INTEGER NOT NULL,
	owner_token      TEXT NOT NULL,     -- which fleet in that process
	started_by       TEXT NOT NULL,
	last_status      TEXT NOT NULL,
	desired_status   TEXT NOT NULL,
	created_at       INTEGER NOT NULL,  -- Unix nanoseconds; 0 is unset
	started_at       INTEGER NOT NULL,
	stopping_at      INTEGER NOT NULL DEFAULT 0,
	stopped_at       INTEGER NOT NULL DEFAULT 0,
	stop_code        TEXT NOT NULL DEFAULT '',
	reason           TEXT NOT NULL DEFAULT '',
	exit_code        INTEGER,
	container_reason TEXT NOT NULL DEFAULT '',
	version          INTEGER NOT NULL,
	published        INTEGER NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS workers_by_cluster ON workers(cluster, last_status);
`

const columns = `id, cluster, host, pid, proc_start, boot_id, owner_pid, owner_start, owner_token, started_by,
	last_status, desired_status, created_at, started_at, stopping_at, stopped_at,
	stop_code, reason, exit_code, container_reason, version, published`

// row is one worker in the registry.
type row struct {
	ID, Cluster, Host         string
	PID                       int
	ProcStart                 uint64
	BootID                    string
	OwnerPID                  int
	OwnerStart                uint64
	OwnerToken                string
	StartedBy                 string
	LastStatus, DesiredStatus string
	CreatedAt, StartedAt      time.Time
	StoppingAt, StoppedAt     time.Time
	StopCode, Reason          string
	ExitCode                  *int
	ContainerReason           string
	Version, Published        int64
}

func nanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

type scanner interface{ Scan(...any) error }

func scanRow(s scanner) (row, error) {
	var r row
	var procStart, ownerStart int64
	var created, started, stopping, stopped int64
	var exit sql.NullInt64
	err := s.Scan(&r.ID, &r.Cluster, &r.Host, &r.PID, &procStart, &r.BootID, &r.OwnerPID, &ownerStart, &r.OwnerToken, &r.StartedBy,
		&r.LastStatus, &r.DesiredStatus, &created, &started, &stopping, &stopped,
		&r.StopCode, &r.Reason, &exit, &r.ContainerReason, &r.Version, &r.Published)
	if err != nil {
		return row{}, err
	}
	r.ProcStart, r.OwnerStart = uint64(procStart), uint64(ownerStart)
	r.CreatedAt, r.StartedAt = fromNanos(created), fromNanos(started)
	r.StoppingAt, r.StoppedAt = fromNanos(stopping), fromNanos(stopped)
	if exit.Valid {
		c := int(exit.Int64)
		r.ExitCode = &c
	}
	return r, nil
}

func (r row) worker() fleet.Worker {
	return fleet.Worker{
		ID:              r.ID,
		LastStatus:      r.LastStatus,
		DesiredStatus:   r.DesiredStatus,
		CreatedAt:       r.CreatedAt,
		StartedAt:       r.StartedAt,
		StoppedAt:       r.StoppedAt,
		StopCode:        r.StopCode,
		Reason:          r.Reason,
		ExitCode:        r.ExitCode,
		ContainerReason: r.ContainerReason,
	}
}

func (r row) event(id string, now time.Time) fleet.Event {
	return fleet.Event{
		EventID:         id,
		Source:          fleet.SourceLocal,
		Time:            now,
		WorkerID:        r.ID,
		Cluster:         r.Cluster,
		LastStatus:      r.LastStatus,
		DesiredStatus:   r.DesiredStatus,
		StopCode:        r.StopCode,
		Reason:          r.Reason,
		ExitCode:        r.ExitCode,
		ContainerReason: r.ContainerReason,
		StartedBy:       r.StartedBy,
		Group:           groupName,
		CreatedAt:       r.CreatedAt,
		StartedAt:       r.StartedAt,
		StoppingAt:      r.StoppingAt,
		StoppedAt:       r.StoppedAt,
		Version:         r.Version,
	}
}

type registry struct {
	db *sql.DB
}

func (g *registry) get(ctx context.Context, id string) (row, bool, error) {
	r, err := scanRow(g.db.QueryRowContext(ctx, `SELECT `+columns+` FROM workers WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return row{}, false, nil
	}
	if err != nil {
		return row{}, false, sqlitedb.MapErr(err, "read worker %s", id)
	}
	return r, true, nil
}

func (g *registry) list(ctx context.Context, cluster string) ([]row, error) {
	rs, err := g.db.QueryContext(ctx, `SELECT `+columns+` FROM workers WHERE cluster = ? ORDER BY created_at, id`, cluster)
	if err != nil {
		return nil, sqlitedb.MapErr(err, "list workers")
	}
	defer rs.Close()
	var out []row
	for rs.Next() {
		r, err := scanRow(rs)
		if err != nil {
			return nil, sqlitedb.MapErr(err, "list workers")
		}
		out = append(out, r)
	}
	return out, sqlitedb.MapErr(rs.Err(), "list workers")
}

// insertRunning records a started worker. A row left by an earlier process
// with the same pid is replaced; if it was still active, it is first
// marked STOPPED ("process gone": its pid is now another process's), and
// both rows are returned, to publish in order. Versions continue from the
// old row's, so a reader ordering one id's events by version stays right.
func (g *registry) insertRunning(ctx context.Context, r row, now time.Time) ([]row, error) {
	var out []row
	err := sqlitedb.InTx(ctx, g.db, func(tx *sql.Tx) error {
		old, err := scanRow(tx.QueryRowContext(ctx, `SELECT `+columns+` FROM workers WHERE id = ?`, r.ID))
		switch {
		case errors.Is(err, sql.ErrNoRows):
			r.Version = 1
		case err != nil:
			return err
		default:
			r.Version = old.Version + 1
			if old.LastStatus != fleet.StatusStopped {
				old.LastStatus, old.DesiredStatus = fleet.StatusStopped, fleet.StatusStopped
				old.StopCode = orDefault(old.StopCode, fleet.StopEssentialContainerExited)
				old.Reason = orDefault(old.Reason, reasonGone)
				if old.StoppingAt.IsZero() {
					old.StoppingAt = now
				}
				old.StoppedAt, old.ExitCode, old.Version = now, nil, old.Version+1
				old.Published = old.Version
				out = append(out, old)
				r.Version = old.Version + 1
			}
		}
		r.Published = r.Version
		_, err = tx.ExecContext(ctx, `INSERT OR REPLACE INTO workers (`+columns+`)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			r.ID, r.Cluster, r.Host, r.PID, int64(r.ProcStart), r.BootID, r.OwnerPID, int64(r.OwnerStart), r.OwnerToken, r.StartedBy,
			r.LastStatus, r.DesiredStatus, nanos(r.CreatedAt), nanos(r.StartedAt), nanos(r.StoppingAt), nanos(r.StoppedAt),
			r.StopCode, r.Reason, r.ExitCode, r.ContainerReason, r.Version, r.Published)
		return err
	})
	if err != nil {
		return nil, sqlitedb.MapErr(err, "record worker %s", r.ID)
	}
	return append(out, r), nil
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// markStopping records a Stop: desired STOPPED, last STOPPING. It returns
// false when the worker is already stopping or stopped.
func (g *registry) markStopping(ctx context.Context, id, reason string, now time.Time) (row, bool, error) {
	r, err := scanRow(g.db.QueryRowContext(ctx, `UPDATE workers SET
			desired_status = 'STOPPED', last_status = 'STOPPING', stop_code = ?, reason = ?,
			stopping_at = ?, version = version + 1, published = version + 1
		WHERE id = ? AND desired_status <> 'STOPPED' AND last_status <> 'STOPPED'
		RETURNING `+columns,
		fleet.StopUserInitiated, reason, nanos(now), id))
	if errors.Is(err, sql.ErrNoRows) {
		return row{}, false, nil
	}
	if err != nil {
		return row{}, false, sqlitedb.MapErr(err, "stop worker %s", id)
	}
	return r, true, nil
}

// exit is how a worker ended.
type exit struct {
	code            *int   // nil when unknown
	containerReason string // e.g. "killed by signal 9"
	stopCode        string // unless a Stop set one
	reason          string // unless a Stop set one
}

// markStopped records that the process (id, procStart) ended. It returns
// false when another process recorded it first.
func (g *registry) markStopped(ctx context.Context, id string, procStart uint64, x exit, now time.Time) (row, bool, error) {
	var code sql.NullInt64
	if x.code != nil {
		code = sql.NullInt64{Int64: int64(*x.code), Valid: true}
	}
	r, err := scanRow(g.db.QueryRowContext(ctx, `UPDATE workers SET
			last_status = 'STOPPED', desired_status = 'STOPPED',
			stop_code = CASE WHEN stop_code = '' THEN ? ELSE stop_code END,
			reason = CASE WHEN reason = '' THEN ? ELSE reason END,
			stopping_at = CASE WHEN stopping_at = 0 THEN ? ELSE stopping_at END,
			stopped_at = ?, exit_code = ?, container_reason = ?, owner_pid = 0, owner_start = 0, owner_token = '',
			version = version + 1, published = version + 1
		WHERE id = ? AND proc_start = ? AND last_status <> 'STOPPED'
		RETURNING `+columns,
		x.stopCode, x.reason, nanos(now), nanos(now), code, x.containerReason, id, int64(procStart)))
	if errors.Is(err, sql.ErrNoRows) {
		return row{}, false, nil
	}
	if err != nil {
		return row{}, false, sqlitedb.MapErr(err, "record the end of worker %s", id)
	}
	return r, true, nil
}

// claim takes the job of publishing r's current version, if no one has.
func (g *registry) claim(ctx context.Context, r row) (bool, error) {
	res, err := g.db.ExecContext(ctx, `UPDATE workers SET published = version
		WHERE id = ? AND version = ? AND published < version`, r.ID, r.Version)
	if err != nil {
		return false, sqlitedb.MapErr(err, "claim the event of worker %s", r.ID)
	}
	n, err := res.RowsAffected()
	return n == 1, sqlitedb.MapErr(err, "claim the event of worker %s", r.ID)
}

// unclaim gives back the publishing of r's version after a failed send.
func (g *registry) unclaim(ctx context.Context, r row) error {
	_, err := g.db.ExecContext(ctx, `UPDATE workers SET published = version - 1
		WHERE id = ? AND version = ? AND published = version`, r.ID, r.Version)
	return sqlitedb.MapErr(err, "give back the event of worker %s", r.ID)
}

// disown records that the fleet token no longer waits for its workers:
// whoever lists next detects their exits.
func (g *registry) disown(ctx context.Context, token string) error {
	_, err := g.db.ExecContext(ctx, `UPDATE workers SET owner_pid = 0, owner_start = 0, owner_token = ''
		WHERE owner_token = ? AND last_status <> 'STOPPED'`, token)
	return sqlitedb.MapErr(err, "release workers")
}

// prune deletes stopped workers older than before whose events are sent.
func (g *registry) prune(ctx context.Context, cluster string, before time.Time) error {
	_, err := g.db.ExecContext(ctx, `DELETE FROM workers
		WHERE cluster = ? AND last_status = 'STOPPED' AND stopped_at < ? AND published >= version`,
		cluster, nanos(before))
	return sqlitedb.MapErr(err, "prune stopped workers")
}
