package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// SessionRecord is a session as the store keeps it: every instance's
// memory is a cache of these rows. Key is the session's keyed hash of the
// account name and the submitted string; nothing else of the string is
// kept, not even the password's length.
type SessionRecord struct {
	ID       string
	User     string
	Key      []byte
	Protocol string
	Remote   string
	Created  time.Time
	Expires  time.Time
	LastUsed time.Time
	Epoch    int64
	// Whole is true when the whole string was the password (service
	// accounts, accounts without two-step under policy allow).
	Whole bool
}

const sessionColumns = `id, user_name, key_hash, protocol, remote, created_at, expires_at, last_used, epoch, whole`

// sessionUpsert writes a new session; a row left for the same key (an
// expired session, one from before a security change, or one a racing
// instance wrote) gives way to it.
const sessionUpsert = `INSERT INTO sessions (` + sessionColumns + `) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
	ON CONFLICT (key_hash) DO UPDATE SET id = excluded.id, user_name = excluded.user_name,
	protocol = excluded.protocol, remote = excluded.remote, created_at = excluded.created_at,
	expires_at = excluded.expires_at, last_used = excluded.last_used, epoch = excluded.epoch, whole = excluded.whole`

func sessionArgs(r *SessionRecord) []any {
	return []any{r.ID, r.User, r.Key, r.Protocol, r.Remote, unix(r.Created), unix(r.Expires), unix(r.LastUsed), r.Epoch, r.Whole}
}

func scanSession(sc interface{ Scan(...any) error }) (*SessionRecord, error) {
	var r SessionRecord
	var created, expires, used int64
	if err := sc.Scan(&r.ID, &r.User, &r.Key, &r.Protocol, &r.Remote, &created, &expires, &used, &r.Epoch, &r.Whole); err != nil {
		return nil, err
	}
	r.Created, r.Expires, r.LastUsed = time.Unix(created, 0), time.Unix(expires, 0), time.Unix(used, 0)
	return &r, nil
}

// ConsumeStepWithSession is ConsumeStep that also writes sess in the same
// transaction, when the step is accepted: a sign-in's session is on disk
// exactly when its code is used, and costs no commit of its own.
func (s *Store) ConsumeStepWithSession(ctx context.Context, id, step int64, sess *SessionRecord) error {
	return s.steps.submit(ctx, &stepRequest{id: id, step: step, sess: sess, done: make(chan error, 1)}, s.path)
}

// SaveSession writes a session made without a time step (a sent or
// recovery code, a password-only sign-in), in the next group commit.
func (s *Store) SaveSession(ctx context.Context, sess *SessionRecord) error {
	return s.steps.submit(ctx, &stepRequest{sess: sess, done: make(chan error, 1)}, s.path)
}

const sessionByKey = `SELECT ` + sessionColumns + ` FROM sessions WHERE key_hash = ?`

// failureEvents reads the lockout log of n keys.
func failureEvents(n int) string {
	return `SELECT key, instance, kind, str, at, until_at, level FROM failure_events
		WHERE key IN (?` + strings.Repeat(", ?", n-1) + `) AND at > ? AND (instance <> ? OR kind = 'reset') ORDER BY id`
}

// SessionByKey returns the session stored for key, or ErrNotFound.
func (s *Store) SessionByKey(ctx context.Context, key []byte) (*SessionRecord, error) {
	r, err := scanSession(s.stmtSessionByKey.QueryRowContext(ctx, key))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("session: %w", ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("reading a session: %w", err)
	}
	return r, nil
}

// Sessions returns the stored sessions of user, or of everyone when user
// is "", expired ones not yet swept included.
func (s *Store) Sessions(ctx context.Context, user string) ([]SessionRecord, error) {
	q, args := `SELECT `+sessionColumns+` FROM sessions ORDER BY created_at, id`, []any(nil)
	if user != "" {
		q, args = `SELECT `+sessionColumns+` FROM sessions WHERE user_name = ? ORDER BY created_at, id`, []any{user}
	}
	rows, err := s.db.QueryContext(ctx, s.sql(q), args...)
	if err != nil {
		return nil, fmt.Errorf("listing sessions: %w", err)
	}
	defer rows.Close()
	var out []SessionRecord
	for rows.Next() {
		r, err := scanSession(rows)
		if err != nil {
			return nil, fmt.Errorf("listing sessions: %w", err)
		}
		out = append(out, *r)
	}
	return out, rows.Err()
}

// TouchSessions writes when sessions were last used, in one transaction.
// A time never moves back.
func (s *Store) TouchSessions(ctx context.Context, used map[string]time.Time) error {
	if len(used) == 0 {
		return nil
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("writing session use: %w", err)
	}
	defer tx.Rollback()
	stmt, err := tx.PrepareContext(ctx, s.sql(`UPDATE sessions SET last_used = ? WHERE id = ? AND last_used < ?`))
	if err != nil {
		return fmt.Errorf("writing session use: %w", err)
	}
	defer stmt.Close()
	for id, t := range used {
		if _, err := stmt.ExecContext(ctx, unix(t), id, unix(t)); err != nil {
			return fmt.Errorf("writing session use: %w", err)
		}
	}
	return tx.Commit()
}

// DeleteSession removes the session with id and returns its user, or
// ErrNotFound. With announce, the account change log names the user, so
// that every instance looks at that user's cached sessions on its next
// poll and closes the one that is gone.
func (s *Store) DeleteSession(ctx context.Context, id string, announce bool) (user string, err error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return "", fmt.Errorf("deleting session %s: %w", id, err)
	}
	defer tx.Rollback()
	err = tx.QueryRowContext(ctx, s.sql(`DELETE FROM sessions WHERE id = ? RETURNING user_name`), id).Scan(&user)
	if errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("session %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("deleting session %s: %w", id, err)
	}
	if announce {
		if _, err := tx.ExecContext(ctx, s.sql(`INSERT INTO account_changes (name) VALUES (?)`), user); err != nil {
			return "", fmt.Errorf("deleting session %s: %w", id, err)
		}
	}
	return user, tx.Commit()
}

// DeleteUserSessions removes every session of user and returns how many
// there were. Other instances learn of it from the epoch the caller moves
// (or, for a user without an account row, from the change logged here).
func (s *Store) DeleteUserSessions(ctx context.Context, user string) (int, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("deleting sessions of %s: %w", user, err)
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, s.sql(`DELETE FROM sessions WHERE user_name = ?`), user)
	if err != nil {
		return 0, fmt.Errorf("deleting sessions of %s: %w", user, err)
	}
	n, _ := res.RowsAffected()
	if n > 0 {
		if _, err := tx.ExecContext(ctx, s.sql(`INSERT INTO account_changes (name) VALUES (?)`), user); err != nil {
			return 0, fmt.Errorf("deleting sessions of %s: %w", user, err)
		}
	}
	return int(n), tx.Commit()
}

// SweepSessions removes the sessions that ended by now: past their
// absolute end or unused for idle. A session of an older epoch is dead
// wherever it is found (the verifier compares epochs on every hit) and
// goes with its idle time: comparing it to the account here would set
// the name columns' collations against each other on PostgreSQL.
func (s *Store) SweepSessions(ctx context.Context, now time.Time, idle time.Duration) (int, error) {
	res, err := s.db.ExecContext(ctx, s.sql(`DELETE FROM sessions WHERE expires_at <= ? OR last_used <= ?`),
		unix(now), unix(now.Add(-idle)))
	if err != nil {
		return 0, fmt.Errorf("sweeping sessions: %w", err)
	}
	n, _ := res.RowsAffected()
	return int(n), nil
}

// FailureEvent is one entry of the cluster's lockout log.
type FailureEvent struct {
	Key      string
	Instance string
	Kind     string // "fail", "lock" or "reset"
	Str      string // the failed string's keyed hash, or ""
	At       time.Time
	Until    time.Time // for "lock"
	Level    int       // for "lock"
}

// Failure event kinds.
const (
	FailureFail  = "fail"
	FailureLock  = "lock"
	FailureReset = "reset"
)

// RecordFailures appends events to the lockout log in the next group
// commit and returns once they are on disk, so that an attempt answered
// after them is counted by every instance.
func (s *Store) RecordFailures(ctx context.Context, events []FailureEvent) error {
	if len(events) == 0 {
		return nil
	}
	return s.steps.submit(ctx, &stepRequest{events: events, done: make(chan error, 1)}, s.path)
}

// FailureEvents returns the events for keys since since, oldest first,
// leaving out the failures and lockouts that instance recorded itself
// (it counts them in memory) but not its resets.
func (s *Store) FailureEvents(ctx context.Context, keys []string, since time.Time, instance string) ([]FailureEvent, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	args := []any{}
	for _, k := range keys {
		args = append(args, k)
	}
	args = append(args, since.UnixNano(), instance)
	var rows *sql.Rows
	var err error
	if len(keys) <= len(s.stmtFailures) {
		rows, err = s.stmtFailures[len(keys)-1].QueryContext(ctx, args...)
	} else {
		rows, err = s.db.QueryContext(ctx, s.sql(failureEvents(len(keys))), args...)
	}
	if err != nil {
		return nil, fmt.Errorf("reading failure events: %w", err)
	}
	defer rows.Close()
	var out []FailureEvent
	for rows.Next() {
		var e FailureEvent
		var at, until int64
		if err := rows.Scan(&e.Key, &e.Instance, &e.Kind, &e.Str, &at, &until, &e.Level); err != nil {
			return nil, fmt.Errorf("reading failure events: %w", err)
		}
		e.At = time.Unix(0, at)
		if until != 0 {
			e.Until = time.Unix(0, until)
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// PruneFailures drops the events recorded before before.
func (s *Store) PruneFailures(ctx context.Context, before time.Time) error {
	_, err := s.db.ExecContext(ctx, s.sql(`DELETE FROM failure_events WHERE at < ?`), before.UnixNano())
	if err != nil {
		return fmt.Errorf("pruning failure events: %w", err)
	}
	return nil
}

func eventArgs(e *FailureEvent) []any {
	var until int64
	if !e.Until.IsZero() {
		until = e.Until.UnixNano()
	}
	return []any{e.Key, e.Instance, e.Kind, e.Str, e.At.UnixNano(), until, e.Level}
}

const failureInsert = `INSERT INTO failure_events (key, instance, kind, str, at, until_at, level) VALUES (?, ?, ?, ?, ?, ?, ?)`
