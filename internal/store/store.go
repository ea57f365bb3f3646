// Package store keeps stepgate's durable state, accounts and their
// authenticators, behind one API whatever the database: an embedded
// SQLite database by default (modernc.org/sqlite, no cgo), or PostgreSQL
// (pgx) that several instances share, each engine a dialect with its
// schema migrations compiled into the binary.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/stepgate/stepgate/internal/seal"
)

// ErrNotFound is returned when a user or authenticator does not exist.
var ErrNotFound = errors.New("not found")

// ErrExists is returned when a name is already taken.
var ErrExists = errors.New("already exists")

// ErrWrongKey is returned by Open when the database was sealed with
// another key than the one given.
var ErrWrongKey = errors.New("sealed with another key")

// Store is the durable account store. It is safe for concurrent use by
// one process; other processes (the CLI next to a running server) may
// open the same file at the same time.
type Store struct {
	path   string
	db     *sql.DB
	d      dialect
	sealer *seal.Sealer
	now    func() time.Time
	steps  *stepCommitter
	health health
	// Prepared once: parsing SQL costs more than running these on the
	// sign-in path.
	stmtUser, stmtGroups, stmtAuths, stmtAuthsConfirmed, stmtAccount *sql.Stmt
}

// Options tune Open (and each engine's constructor).
type Options struct {
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// open makes a Store of a database that the engine's constructor opened:
// it applies pending migrations and checks that sealer holds the key the
// database was sealed with. where names the database in errors.
func open(ctx context.Context, d dialect, where string, db *sql.DB, sealer *seal.Sealer, opts Options) (*Store, error) {
	s := &Store{path: where, db: db, d: d, sealer: sealer, now: time.Now}
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
	s.steps = newStepCommitter(s.db, s.sql, s.noteWrite)
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
		{&s.stmtAuthsConfirmed, authQuery + ` AND confirmed = TRUE ORDER BY id`},
		{&s.stmtAccount, `SELECT u.id, u.name, u.display_name, u.email, u.phone, u.password_hash, u.two_step, u.epoch,
			u.disabled, u.service, u.created_at, u.updated_at, u.source, COALESCE(u.external_id, ''), a.id, a.label, a.secret, a.last_step, a.created_at
			FROM users u LEFT JOIN authenticators a ON a.user_id = u.id AND a.confirmed = TRUE
			WHERE u.name = ? ORDER BY a.id`},
	} {
		st, err := s.db.PrepareContext(ctx, s.sql(p.q))
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

// Path is where the database is: its file, for SQLite.
func (s *Store) Path() string { return s.path }

// Sealer is the key the store seals secrets with.
func (s *Store) Sealer() *seal.Sealer { return s.sealer }

// Generation is the number of the latest account change, whichever
// process made it: a cache of accounts compares it to know when to look
// at ChangesSince. Accepting a code does not move it.
func (s *Store) Generation(ctx context.Context) (int64, error) {
	var v int64
	err := s.db.QueryRowContext(ctx, s.sql("SELECT COALESCE(MAX(seq), 0) FROM account_changes")).Scan(&v)
	return v, err
}

// ChangesSince returns the names of the accounts changed after generation
// gen, up to limit of them, and the generation they bring the caller to.
// complete is false when the log no longer reaches back to gen (it is
// pruned) or holds more than limit changes: the caller must then treat
// every account as changed.
func (s *Store) ChangesSince(ctx context.Context, gen int64, limit int) (names []string, to int64, complete bool, err error) {
	var oldest int64
	if err := s.db.QueryRowContext(ctx, s.sql("SELECT COALESCE(MIN(seq), 0) FROM account_changes")).Scan(&oldest); err != nil {
		return nil, 0, false, err
	}
	rows, err := s.db.QueryContext(ctx, s.sql("SELECT seq, name FROM account_changes WHERE seq > ? ORDER BY seq LIMIT ?"), gen, limit+1)
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
	_, err := s.db.ExecContext(ctx, s.sql("DELETE FROM account_changes WHERE seq <= (SELECT MAX(seq) FROM account_changes) - ?"), keep)
	return err
}

// checkKey records the sealing key's fingerprint in a new database and
// refuses a database sealed under another key, naming both files.
func (s *Store) checkKey(ctx context.Context) error {
	id := s.sealer.KeyID()
	var have string
	err := s.db.QueryRowContext(ctx, s.sql("SELECT value FROM meta WHERE key = 'sealing_key_id'")).Scan(&have)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		_, err = s.db.ExecContext(ctx, s.sql("INSERT INTO meta (key, value) VALUES ('sealing_key_id', ?) ON CONFLICT (key) DO NOTHING"), id)
		if err != nil {
			return fmt.Errorf("store %s: recording the sealing key: %w", s.path, err)
		}
		return s.checkKey(ctx)
	case err != nil:
		return fmt.Errorf("store %s: reading the sealing key id: %w", s.path, err)
	case have != id:
		return fmt.Errorf("store %s was %w than %s (key id %s, the database expects %s); "+
			"point STEPGATE_SEALING_KEY_FILE at the right key file", s.path, ErrWrongKey, s.sealer.Path(), id, have)
	}
	return nil
}

func unix(t time.Time) int64 { return t.Unix() }
