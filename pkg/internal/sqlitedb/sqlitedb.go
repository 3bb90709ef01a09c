// Package sqlitedb opens the SQLite databases behind the embedded profile's
// adapters (job store, queue, fleet registry) with the settings they all
// rely on:
//
//   - WAL journal, so readers never block the writer and several processes
//     can share one file;
//   - synchronous=FULL, so a committed transaction survives kill -9 and power
//     loss: acknowledged means on disk;
//   - a busy timeout, so concurrent writers in other processes wait for the
//     lock instead of failing;
//   - BEGIN IMMEDIATE for every transaction, so a read-then-write
//     transaction takes the write lock up front and cannot deadlock on lock
//     upgrade.
//
// It uses modernc.org/sqlite (pure Go, no cgo).
package sqlitedb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/jobfleet/jobfleet/pkg/errcode"
)

// BusyTimeoutMS is how long a connection waits for another writer's lock.
const BusyTimeoutMS = 30000

// Open opens (creating if needed) the database file at path and runs schema
// (idempotent DDL, e.g. CREATE TABLE IF NOT EXISTS) in one transaction.
func Open(ctx context.Context, path string, schema string) (*sql.DB, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	q := url.Values{}
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(FULL)")
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", BusyTimeoutMS))
	q.Add("_pragma", "foreign_keys(ON)")
	q.Set("_txlock", "immediate")
	dsn := "file:" + (&url.URL{Path: path}).EscapedPath() + "?" + q.Encode()
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	if schema != "" {
		if err := InTx(ctx, db, func(tx *sql.Tx) error {
			_, err := tx.ExecContext(ctx, schema)
			return err
		}); err != nil {
			db.Close()
			return nil, fmt.Errorf("create schema in %s: %w", path, err)
		}
	}
	return db, nil
}

// InTx runs fn in a transaction (BEGIN IMMEDIATE) and commits it, or rolls
// back when fn fails.
func InTx(ctx context.Context, db *sql.DB, fn func(*sql.Tx) error) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return MapErr(err, "begin transaction")
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return MapErr(err, "commit")
	}
	return nil
}

// MapErr maps a SQLite error to an errcode, saying what was being done.
// Context errors pass through (errcode.Of reports them as Canceled).
func MapErr(err error, doing string, args ...any) error {
	if err == nil {
		return nil
	}
	what := fmt.Sprintf(doing, args...)
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s: %w", what, err)
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() & 0xff {
		case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED:
			return errcode.Wrap(errcode.Unavailable, err, "%s", what)
		case sqlite3.SQLITE_CONSTRAINT:
			return errcode.Wrap(errcode.AlreadyExists, err, "%s", what)
		case sqlite3.SQLITE_FULL, sqlite3.SQLITE_TOOBIG:
			return errcode.Wrap(errcode.ResourceExhausted, err, "%s", what)
		case sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB:
			return errcode.Wrap(errcode.Internal, err, "%s", what)
		}
	}
	if errors.Is(err, sql.ErrConnDone) || errors.Is(err, sql.ErrTxDone) ||
		strings.Contains(err.Error(), "sql: database is closed") {
		return errcode.Wrap(errcode.Closed, err, "%s", what)
	}
	return fmt.Errorf("%s: %w", what, err)
}
