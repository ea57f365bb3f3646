package store

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
)

// Each engine's migrations sit in a folder of their own, numbered alike:
// version n means the same schema whatever the engine.
//
//go:embed migrations/*/*.sql
var migrationFS embed.FS

type migration struct {
	version int
	name    string
	sql     string
}

func migrations(engine string) ([]migration, error) {
	dir := path.Join("migrations", engine)
	entries, err := fs.ReadDir(migrationFS, dir)
	if err != nil {
		return nil, err
	}
	var out []migration
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".sql") {
			continue
		}
		n, _, ok := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(n)
		if !ok || err != nil {
			return nil, fmt.Errorf("migration %s: name must start with a number and _", e.Name())
		}
		b, err := fs.ReadFile(migrationFS, path.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		out = append(out, migration{version: v, name: e.Name(), sql: string(b)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].version < out[j].version })
	for i, m := range out {
		if m.version != i+1 {
			return nil, fmt.Errorf("migration %s: expected number %d", m.name, i+1)
		}
	}
	return out, nil
}

// LatestVersion is the schema version this binary migrates to.
func LatestVersion() int {
	ms, err := migrations(sqliteDialect{}.name())
	if err != nil {
		return 0
	}
	return len(ms)
}

// schemaMigrations records each migration applied, in the part of SQL
// every engine shares. applied_at is 0 for the migrations a database had
// before the table existed: when they ran is not known.
const schemaMigrations = `CREATE TABLE IF NOT EXISTS schema_migrations (
	version    INTEGER PRIMARY KEY,
	name       TEXT NOT NULL,
	applied_at BIGINT NOT NULL
)`

// Version is the schema version the database is at.
func (s *Store) Version(ctx context.Context) (int, error) {
	v, _, err := s.schemaVersion(ctx, s.db)
	return v, err
}

// schemaVersion is the highest version that schema_migrations or the
// engine's legacy record holds; recorded is false while the table does
// not exist yet.
func (s *Store) schemaVersion(ctx context.Context, q querier) (v int, recorded bool, err error) {
	if v, err = s.d.legacyVersion(ctx, q); err != nil {
		return 0, false, err
	}
	if recorded, err = s.d.hasTable(ctx, q, "schema_migrations"); err != nil || !recorded {
		return v, recorded, err
	}
	var t int
	if err := q.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&t); err != nil {
		return 0, false, err
	}
	return max(v, t), true, nil
}

func (s *Store) migrate(ctx context.Context) error {
	return s.migrateTo(ctx, -1)
}

// migrateTo applies migrations up to version target (-1: all). A database
// from before schema_migrations (SQLite's PRAGMA user_version alone) first
// gets the table, filled with the versions it already has; then it
// carries on from there like any other.
func (s *Store) migrateTo(ctx context.Context, target int) error {
	ms, err := migrations(s.d.name())
	if err != nil {
		return fmt.Errorf("store %s: %w", s.path, err)
	}
	if target < 0 {
		target = len(ms)
	}
	cur, recorded, err := s.schemaVersion(ctx, s.db)
	if err != nil {
		return fmt.Errorf("store %s: reading schema version: %w", s.path, err)
	}
	if cur > len(ms) {
		return fmt.Errorf("store %s: schema version %d is newer than this stepgate knows (%d); use a newer binary", s.path, cur, len(ms))
	}
	if !recorded {
		err := s.migrationTx(ctx, func(tx *sql.Tx, cur int) error {
			if _, err := tx.ExecContext(ctx, schemaMigrations); err != nil {
				return err
			}
			for _, m := range ms[:min(cur, len(ms))] {
				if _, err := tx.ExecContext(ctx, s.sql(`INSERT INTO schema_migrations (version, name, applied_at)
					VALUES (?, ?, 0) ON CONFLICT (version) DO NOTHING`), m.version, m.name); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("store %s: recording the schema version: %w", s.path, err)
		}
	}
	for _, m := range ms[min(cur, target):target] {
		err := s.migrationTx(ctx, func(tx *sql.Tx, cur int) error {
			// Another process may have migrated while we waited for the lock.
			if cur >= m.version {
				return nil
			}
			if _, err := tx.ExecContext(ctx, m.sql); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, s.sql(`INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`),
				m.version, m.name, unix(s.now())); err != nil {
				return err
			}
			return s.d.recordVersion(ctx, tx, m.version)
		})
		if err != nil {
			return fmt.Errorf("store %s: migration %s: %w", s.path, m.name, err)
		}
	}
	return nil
}

// migrationTx runs fn in a transaction that no other process migrates in
// at the same time, with the schema version as it is under that lock.
func (s *Store) migrationTx(ctx context.Context, fn func(tx *sql.Tx, cur int) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := s.d.lockMigrations(ctx, tx); err != nil {
		tx.Rollback()
		return err
	}
	cur, _, err := s.schemaVersion(ctx, tx)
	if err != nil {
		tx.Rollback()
		return err
	}
	if err := fn(tx, cur); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}
