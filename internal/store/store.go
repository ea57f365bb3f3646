// Package store keeps stepgate's durable state, accounts and their
// authenticators, in an embedded SQLite database (modernc.org/sqlite, no
// cgo) with its schema migrations compiled into the binary.
package store

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/stepgate/stepgate/internal/seal"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// ErrNotFound is returned when a user or authenticator does not exist.
var ErrNotFound = errors.New("not found")

// ErrExists is returned when a name is already taken.
var ErrExists = errors.New("already exists")

// Store is the durable account store. It is safe for concurrent use by
// one process; other processes (the CLI next to a running server) may
// open the same file at the same time.
type Store struct {
	path   string
	db     *sql.DB
	sealer *seal.Sealer
	now    func() time.Time
	steps  *stepCommitter
	health health
	// Prepared once: parsing SQL costs more than running these on the
	// sign-in path.
	stmtUser, stmtGroups, stmtAuths, stmtAuthsConfirmed, stmtAccount *sql.Stmt
}

// Options tune Open.
type Options struct {
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Open opens (creating if needed) the database at path, applies pending
// migrations and checks that sealer holds the key the database was
// sealed with.
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
	db, err := openDB(path)
	if err != nil {
		return nil, fmt.Errorf("store %s: %w", path, err)
	}
	s := &Store{path: path, db: db, sealer: sealer, now: time.Now}
	if opts.Now != nil {
		s.now = opts.Now
	}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	if err := s.checkKey(ctx); err != nil {
		db.Close()
		return nil, err
	}
	if err := s.prepare(ctx); err != nil {
		db.Close()
		return nil, err
	}
	s.steps = newStepCommitter(s.db, s.noteWrite)
	return s, nil
}

func (s *Store) prepare(ctx context.Context) error {
	for _, p := range []struct {
		dst **sql.Stmt
		q   string
	}{
		{&s.stmtUser, `SELECT ` + userColumns + ` FROM users WHERE name = ?`},
		{&s.stmtGroups, `SELECT g.name FROM groups g JOIN group_members m ON m.group_id = g.id WHERE m.user_id = ? ORDER BY g.name`},
		{&s.stmtAuths, authQuery + ` ORDER BY id`},
		{&s.stmtAuthsConfirmed, authQuery + ` AND confirmed = 1 ORDER BY id`},
		{&s.stmtAccount, `SELECT u.id, u.name, u.display_name, u.email, u.phone, u.password_hash, u.two_step, u.epoch,
			u.disabled, u.service, u.created_at, u.updated_at, a.id, a.label, a.secret, a.last_step, a.created_at
			FROM users u LEFT JOIN authenticators a ON a.user_id = u.id AND a.confirmed = 1
			WHERE u.name = ? ORDER BY a.id`},
	} {
		st, err := s.db.PrepareContext(ctx, p.q)
		if err != nil {
			return fmt.Errorf("store %s: preparing statements: %w", s.path, err)
		}
		*p.dst = st
	}
	return nil
}

// Close stops background work and closes the database.
func (s *Store) Close() error {
	s.steps.close()
	for _, st := range []*sql.Stmt{s.stmtUser, s.stmtGroups, s.stmtAuths, s.stmtAuthsConfirmed, s.stmtAccount} {
		st.Close()
	}
	return s.db.Close()
}

// Path is the database file.
func (s *Store) Path() string { return s.path }

// Sealer is the key the store seals secrets with.
func (s *Store) Sealer() *seal.Sealer { return s.sealer }

// Version is the schema version the database is at.
func (s *Store) Version(ctx context.Context) (int, error) {
	var v int
	err := s.db.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v)
	return v, err
}

// Generation is the number of the latest account change, whichever
// process made it: a cache of accounts compares it to know when to look
// at ChangesSince. Accepting a code does not move it.
func (s *Store) Generation(ctx context.Context) (int64, error) {
	var v int64
	err := s.db.QueryRowContext(ctx, "SELECT COALESCE(MAX(seq), 0) FROM account_changes").Scan(&v)
	return v, err
}

// ChangesSince returns the names of the accounts changed after generation
// gen, up to limit of them, and the generation they bring the caller to.
// complete is false when the log no longer reaches back to gen (it is
// pruned) or holds more than limit changes: the caller must then treat
// every account as changed.
func (s *Store) ChangesSince(ctx context.Context, gen int64, limit int) (names []string, to int64, complete bool, err error) {
	var oldest int64
	if err := s.db.QueryRowContext(ctx, "SELECT COALESCE(MIN(seq), 0) FROM account_changes").Scan(&oldest); err != nil {
		return nil, 0, false, err
	}
	rows, err := s.db.QueryContext(ctx, "SELECT seq, name FROM account_changes WHERE seq > ? ORDER BY seq LIMIT ?", gen, limit+1)
	if err != nil {
		return nil, 0, false, err
	}
	defer rows.Close()
	to = gen
	seen := map[string]bool{}
	n := 0
	for rows.Next() {
		var seq int64
		var name string
		if err := rows.Scan(&seq, &name); err != nil {
			return nil, 0, false, err
		}
		n++
		to = seq
		if k := strings.ToLower(name); !seen[k] {
			seen[k] = true
			names = append(names, name)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, 0, false, err
	}
	complete = n <= limit && (gen == 0 || oldest <= gen+1)
	return names, to, complete, nil
}

// PruneChanges keeps the last keep entries of the change log.
func (s *Store) PruneChanges(ctx context.Context, keep int64) error {
	_, err := s.db.ExecContext(ctx, "DELETE FROM account_changes WHERE seq <= (SELECT MAX(seq) FROM account_changes) - ?", keep)
	return err
}

type migration struct {
	version int
	name    string
	sql     string
}

func migrations() ([]migration, error) {
	entries, err := fs.ReadDir(migrationFS, "migrations")
	if err != nil {
		return nil, err
	}
	var out []migration
	for _, e := range entries {
		n, _, ok := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(n)
		if !ok || err != nil {
			return nil, fmt.Errorf("migration %s: name must start with a number and _", e.Name())
		}
		b, err := fs.ReadFile(migrationFS, "migrations/"+e.Name())
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
	ms, err := migrations()
	if err != nil {
		return 0
	}
	return len(ms)
}

func (s *Store) migrate(ctx context.Context) error {
	return s.migrateTo(ctx, -1)
}

// migrateTo applies migrations up to version target (-1: all).
func (s *Store) migrateTo(ctx context.Context, target int) error {
	ms, err := migrations()
	if err != nil {
		return fmt.Errorf("store %s: %w", s.path, err)
	}
	if target < 0 {
		target = len(ms)
	}
	cur, err := s.Version(ctx)
	if err != nil {
		return fmt.Errorf("store %s: reading schema version: %w", s.path, err)
	}
	if cur > len(ms) {
		return fmt.Errorf("store %s: schema version %d is newer than this stepgate knows (%d); use a newer binary", s.path, cur, len(ms))
	}
	for _, m := range ms[cur:target] {
		tx, err := s.db.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("store %s: migration %s: %w", s.path, m.name, err)
		}
		// Another process may have migrated while we waited for the lock.
		var v int
		if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
			tx.Rollback()
			return fmt.Errorf("store %s: migration %s: %w", s.path, m.name, err)
		}
		if v >= m.version {
			tx.Rollback()
			continue
		}
		if _, err := tx.ExecContext(ctx, m.sql); err != nil {
			tx.Rollback()
			return fmt.Errorf("store %s: migration %s: %w", s.path, m.name, err)
		}
		if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", m.version)); err != nil {
			tx.Rollback()
			return fmt.Errorf("store %s: migration %s: %w", s.path, m.name, err)
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("store %s: migration %s: %w", s.path, m.name, err)
		}
	}
	return nil
}

// checkKey records the sealing key's fingerprint in a new database and
// refuses a database sealed under another key, naming both files.
func (s *Store) checkKey(ctx context.Context) error {
	id := s.sealer.KeyID()
	var have string
	err := s.db.QueryRowContext(ctx, "SELECT value FROM meta WHERE key = 'sealing_key_id'").Scan(&have)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		_, err = s.db.ExecContext(ctx, "INSERT INTO meta (key, value) VALUES ('sealing_key_id', ?) ON CONFLICT (key) DO NOTHING", id)
		if err != nil {
			return fmt.Errorf("store %s: recording the sealing key: %w", s.path, err)
		}
		return s.checkKey(ctx)
	case err != nil:
		return fmt.Errorf("store %s: reading the sealing key id: %w", s.path, err)
	case have != id:
		return fmt.Errorf("store %s was sealed with another key than %s (key id %s, the database expects %s); "+
			"point STEPGATE_SEALING_KEY_FILE at the right key file", s.path, s.sealer.Path(), id, have)
	}
	return nil
}

func openDB(path string) (*sql.DB, error) {
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "journal_mode(WAL)")
	// FULL: a commit is on disk before it returns, which the replay guard
	// relies on; group commit keeps that cheap.
	q.Add("_pragma", "synchronous(FULL)")
	q.Add("_pragma", "foreign_keys(1)")
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

func unix(t time.Time) int64 { return t.Unix() }
