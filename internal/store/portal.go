package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
)

// AppPassword is a password for one device that signs in without a code
// on its protocols only. Hash is its keyed hash (verifier.AppPasswordHash);
// the password is never kept.
type AppPassword struct {
	ID        int64
	UserID    int64
	Name      string
	Hash      []byte
	Protocols []string
	Created   time.Time
}

// AddAppPassword adds an app password to the account called user.
func (s *Store) AddAppPassword(ctx context.Context, user, name string, hash []byte, protocols []string) (*AppPassword, error) {
	user = lookupName(user)
	ps := append([]string(nil), protocols...)
	sort.Strings(ps)
	now := s.now()
	a := &AppPassword{Name: name, Hash: hash, Protocols: ps, Created: time.Unix(unix(now), 0)}
	err := s.tx(ctx, func(tx *sql.Tx) error {
		err := tx.QueryRowContext(ctx, s.sql(`INSERT INTO app_passwords (user_id, name, key_hash, protocols, created_at)
			SELECT id, ?, ?, ?, ? FROM users WHERE name = ? RETURNING id, user_id`),
			name, hash, strings.Join(ps, ","), unix(now), user).Scan(&a.ID, &a.UserID)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("user %s: %w", user, ErrNotFound)
		}
		if err != nil {
			return err
		}
		return logChange(ctx, s, tx, user)
	})
	if err != nil {
		return nil, fmt.Errorf("adding an app password for %s: %w", user, err)
	}
	return a, nil
}

// logChange names user in the account change log, so that every
// instance drops its cached account (app passwords have no trigger: the
// PostgreSQL triggers are functions, and one explicit line is clearer).
func logChange(ctx context.Context, s *Store, tx *sql.Tx, user string) error {
	_, err := tx.ExecContext(ctx, s.sql(`INSERT INTO account_changes (name) VALUES (?)`), user)
	return err
}

// AppPasswords returns the app passwords of the account with id userID,
// oldest first.
func (s *Store) AppPasswords(ctx context.Context, userID int64) ([]AppPassword, error) {
	rows, err := s.db.QueryContext(ctx, s.sql(`SELECT id, user_id, name, key_hash, protocols, created_at
		FROM app_passwords WHERE user_id = ? ORDER BY id`), userID)
	if err != nil {
		return nil, fmt.Errorf("app passwords: %w", err)
	}
	defer rows.Close()
	var out []AppPassword
	for rows.Next() {
		var a AppPassword
		var ps string
		var created int64
		if err := rows.Scan(&a.ID, &a.UserID, &a.Name, &a.Hash, &ps, &created); err != nil {
			return nil, fmt.Errorf("app passwords: %w", err)
		}
		if ps != "" {
			a.Protocols = strings.Split(ps, ",")
		}
		a.Created = time.Unix(created, 0)
		out = append(out, a)
	}
	return out, rows.Err()
}

// DeleteAppPassword removes app password id of the account called user
// and returns it, or ErrNotFound.
func (s *Store) DeleteAppPassword(ctx context.Context, user string, id int64) (*AppPassword, error) {
	user = lookupName(user)
	a := &AppPassword{ID: id}
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var ps string
		var created int64
		err := tx.QueryRowContext(ctx, s.sql(`DELETE FROM app_passwords WHERE id = ?
			AND user_id = (SELECT id FROM users WHERE name = ?) RETURNING user_id, name, key_hash, protocols, created_at`),
			id, user).Scan(&a.UserID, &a.Name, &a.Hash, &ps, &created)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("app password %d of %s: %w", id, user, ErrNotFound)
		}
		if err != nil {
			return err
		}
		if ps != "" {
			a.Protocols = strings.Split(ps, ",")
		}
		a.Created = time.Unix(created, 0)
		return logChange(ctx, s, tx, user)
	})
	if err != nil {
		return nil, err
	}
	return a, nil
}

// RemoveAuthenticator removes confirmed or pending authenticator id of
// the account called user. The account's two-step state is the caller's
// to settle.
func (s *Store) RemoveAuthenticator(ctx context.Context, user string, id int64) error {
	user = lookupName(user)
	return s.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, s.sql(`DELETE FROM authenticators WHERE id = ?
			AND user_id = (SELECT id FROM users WHERE name = ?)`), id, user)
		if err != nil {
			return fmt.Errorf("removing authenticator %d of %s: %w", id, user, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("authenticator %d of %s: %w", id, user, ErrNotFound)
		}
		return nil
	})
}

// UserEvent is one line of a person's security history.
type UserEvent struct {
	User     string
	At       time.Time
	Kind     string // UserEventSignIn or UserEventChange
	Protocol string
	Remote   string
	Result   string
	Detail   string
}

// User event kinds.
const (
	UserEventSignIn = "sign_in"
	UserEventChange = "change"
)

// AddUserEvents writes events in one transaction, for accounts that
// exist only (names that are no account would let anyone fill the
// table), and keeps the newest keep events of each account written to.
// The history is best effort: its writes leave the store's health to
// the writes that matter and to the probe (which logs the recovery).
func (s *Store) AddUserEvents(ctx context.Context, events []UserEvent, keep int) error {
	if len(events) == 0 {
		return nil
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("writing user events: %w", err)
	}
	defer tx.Rollback()
	if err := func() error {
		ins, err := tx.PrepareContext(ctx, s.sql(`INSERT INTO user_events (user_name, at, kind, protocol, remote, result, detail)
			SELECT ?, ?, ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM users WHERE name = ?)`))
		if err != nil {
			return fmt.Errorf("writing user events: %w", err)
		}
		defer ins.Close()
		users := map[string]bool{}
		for _, e := range events {
			if _, err := ins.ExecContext(ctx, e.User, unix(e.At), e.Kind, e.Protocol, e.Remote, e.Result, e.Detail, e.User); err != nil {
				return fmt.Errorf("writing user events: %w", err)
			}
			users[e.User] = true
		}
		for u := range users {
			if _, err := tx.ExecContext(ctx, s.sql(`DELETE FROM user_events WHERE user_name = ? AND id <= (
				SELECT id FROM user_events WHERE user_name = ? ORDER BY id DESC LIMIT 1 OFFSET ?)`), u, u, keep); err != nil {
				return fmt.Errorf("pruning user events: %w", err)
			}
		}
		return nil
	}(); err != nil {
		return err
	}
	return tx.Commit()
}

// UserEvents returns the newest limit events of user, newest first.
func (s *Store) UserEvents(ctx context.Context, user string, limit int) ([]UserEvent, error) {
	rows, err := s.db.QueryContext(ctx, s.sql(`SELECT user_name, at, kind, protocol, remote, result, detail
		FROM user_events WHERE user_name = ? ORDER BY id DESC LIMIT ?`), lookupName(user), limit)
	if err != nil {
		return nil, fmt.Errorf("user events: %w", err)
	}
	defer rows.Close()
	var out []UserEvent
	for rows.Next() {
		var e UserEvent
		var at int64
		if err := rows.Scan(&e.User, &at, &e.Kind, &e.Protocol, &e.Remote, &e.Result, &e.Detail); err != nil {
			return nil, fmt.Errorf("user events: %w", err)
		}
		e.At = time.Unix(at, 0)
		out = append(out, e)
	}
	return out, rows.Err()
}
