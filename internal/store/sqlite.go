package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/stepgate/stepgate/internal/seal"

	"modernc.org/sqlite" // registers the "sqlite" driver
	sqlite3 "modernc.org/sqlite/lib"
)

// Open opens (creating if needed) the SQLite database at path, applies
// pending migrations and checks that sealer holds the key the database
// was sealed with.
func Open(ctx context.Context, path string, sealer *seal.Sealer, opts Options) (*Store, error) {
	if sealer == nil {
		return nil, fmt.Errorf("store %s: no sealing key", path)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("store %s: %w", path, err)
	}
	// Create the file ourselves so that it is never readable by others.
	if f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE, 0o600); err == nil {
		f.Close()
	} else {
		return nil, fmt.Errorf("store %s: %w", path, err)
	}
	db, err := openSQLite(path)
	if err != nil {
		return nil, fmt.Errorf("store %s: %w", path, err)
	}
	return open(ctx, sqliteDialect{}, path, db, sealer, opts)
}

func openSQLite(path string) (*sql.DB, error) {
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "journal_mode(WAL)")
	// FULL: a commit is on disk before it returns, which the replay guard
	// relies on; group commit keeps that cheap.
	q.Add("_pragma", "synchronous(FULL)")
	q.Add("_pragma", "foreign_keys(1)")
	// Every transaction takes the write lock when it begins: one that
	// read first and wrote later could otherwise fail with SQLITE_BUSY
	// instead of waiting, and migrations rely on it to exclude each other.
	q.Set("_txlock", "immediate")
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(8)
	// Keep them all: a connection closed for being idle one too many
	// costs a reopen and a re-prepare of every statement on the next
	// burst of sign-ins (database/sql keeps only 2 by default).
	db.SetMaxIdleConns(8)
	db.SetConnMaxIdleTime(5 * time.Minute)
	return db, nil
}

// sqliteDialect is the embedded default (modernc.org/sqlite, no cgo).
type sqliteDialect struct{}

func (sqliteDialect) name() string { return "sqlite" }

// bind has nothing to do: SQLite takes ? as it is.
func (sqliteDialect) bind(q string) string { return q }

func (sqliteDialect) isUnique(err error) bool {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return false
	}
	// A primary key is a unique key too: SQLite says "UNIQUE constraint
	// failed" for both.
	switch se.Code() {
	case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
		return true
	}
	return false
}

func (sqliteDialect) storageFault(err error) (fault, known bool) {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return false, false
	}
	switch se.Code() & 0xff {
	case sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN,
		sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_PERM:
		return true, true
	}
	return false, true
}

func (sqliteDialect) hasTable(ctx context.Context, q querier, table string) (bool, error) {
	var n int
	err := q.QueryRowContext(ctx, `SELECT COUNT(*) FROM sqlite_schema WHERE type = 'table' AND name = ?`, table).Scan(&n)
	return n > 0, err
}

// lockMigrations has nothing to do: the migrating transaction began with
// BEGIN IMMEDIATE, which holds the database's one write lock.
func (sqliteDialect) lockMigrations(context.Context, *sql.Tx) error { return nil }

// legacyVersion is PRAGMA user_version, where stepgate recorded the schema
// version before schema_migrations existed.
func (sqliteDialect) legacyVersion(ctx context.Context, q querier) (int, error) {
	var v int
	err := q.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v)
	return v, err
}

// recordVersion keeps PRAGMA user_version in step, so that a stepgate
// from before schema_migrations still refuses a database that a newer one
// migrated past what it knows.
func (sqliteDialect) recordVersion(ctx context.Context, tx *sql.Tx, version int) error {
	_, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", version))
	return err
}
