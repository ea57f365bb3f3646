package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Authenticator is one enrolled authenticator app of an account.
type Authenticator struct {
	ID     int64
	UserID int64
	Label  string
	// Secret is the base32 TOTP secret, opened from its sealed form.
	Secret    string
	Confirmed bool
	// LastStep is the last TOTP time step accepted for it.
	LastStep int64
	Created  time.Time
}

const authQuery = `SELECT id, user_id, label, secret, confirmed, last_step, created_at FROM authenticators WHERE user_id = ?`

func secretContext(userID int64) string { return fmt.Sprintf("totp user %d", userID) }

// AddAuthenticator enrolls a new, unconfirmed authenticator. An account
// without an active one moves to pending. An unconfirmed authenticator
// with the same label is replaced; a confirmed one is an error.
func (s *Store) AddAuthenticator(ctx context.Context, name, label, secret string) (*Authenticator, error) {
	name = lookupName(name)
	label = strings.TrimSpace(label)
	if label == "" || len(label) > 64 {
		return nil, fmt.Errorf("authenticator label must be 1 to 64 characters")
	}
	if secret == "" {
		return nil, fmt.Errorf("authenticator: empty secret")
	}
	var a *Authenticator
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var uid int64
		if err := tx.QueryRowContext(ctx, s.sql(`SELECT id FROM users WHERE name = ?`), name).Scan(&uid); err != nil {
			if errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("user %s: %w", name, ErrNotFound)
			}
			return err
		}
		// Enrolling again under the same label replaces an unconfirmed one
		// (the first QR code was never scanned, say).
		if _, err := tx.ExecContext(ctx, s.sql(`DELETE FROM authenticators WHERE user_id = ? AND label = ? AND confirmed = FALSE`), uid, label); err != nil {
			return err
		}
		var n int
		if err := tx.QueryRowContext(ctx, s.sql(`SELECT COUNT(*) FROM authenticators WHERE user_id = ? AND label = ?`), uid, label).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return fmt.Errorf("user %s: authenticator %q: %w", name, label, ErrExists)
		}
		sealed, err := s.sealer.Seal([]byte(secret), secretContext(uid))
		if err != nil {
			return err
		}
		now := s.now()
		var id int64
		if err := tx.QueryRowContext(ctx, s.sql(`INSERT INTO authenticators (user_id, label, secret, created_at) VALUES (?, ?, ?, ?) RETURNING id`),
			uid, label, sealed, unix(now)).Scan(&id); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, s.sql(`UPDATE users SET two_step = 'pending', updated_at = ? WHERE id = ? AND two_step = 'none'`),
			unix(now), uid); err != nil {
			return err
		}
		a = &Authenticator{ID: id, UserID: uid, Label: label, Secret: secret, Created: time.Unix(unix(now), 0)}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return a, nil
}

// Authenticators returns an account's authenticators with their secrets
// opened; confirmedOnly leaves out those still pending.
func (s *Store) Authenticators(ctx context.Context, userID int64, confirmedOnly bool) ([]Authenticator, error) {
	stmt := s.stmtAuths
	if confirmedOnly {
		stmt = s.stmtAuthsConfirmed
	}
	rows, err := stmt.QueryContext(ctx, userID)
	if err != nil {
		return nil, fmt.Errorf("authenticators: %w", err)
	}
	defer rows.Close()
	var out []Authenticator
	for rows.Next() {
		var a Authenticator
		var sealed []byte
		var created int64
		if err := rows.Scan(&a.ID, &a.UserID, &a.Label, &sealed, &a.Confirmed, &a.LastStep, &created); err != nil {
			return nil, fmt.Errorf("authenticators: %w", err)
		}
		pt, err := s.sealer.Open(sealed, secretContext(a.UserID))
		if err != nil {
			return nil, fmt.Errorf("authenticator %d of user id %d: %w", a.ID, a.UserID, err)
		}
		a.Secret = string(pt)
		a.Created = time.Unix(created, 0)
		out = append(out, a)
	}
	return out, rows.Err()
}

// ConfirmAuthenticator marks an authenticator confirmed by a first code
// accepted at time step step, turns two-step on for the account, and
// records the step so that the confirming code cannot also sign in.
func (s *Store) ConfirmAuthenticator(ctx context.Context, id, step int64) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		var uid int64
		err := tx.QueryRowContext(ctx, s.sql(`UPDATE authenticators SET confirmed = TRUE,
			last_step = CASE WHEN last_step > ? THEN last_step ELSE ? END
			WHERE id = ? RETURNING user_id`), step, step, id).Scan(&uid)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("authenticator %d: %w", id, ErrNotFound)
		}
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, s.sql(`UPDATE users SET two_step = 'active', updated_at = ? WHERE id = ?`), unix(s.now()), uid)
		return err
	})
}

// DisableTwoStep removes every authenticator of an account, turns two-step
// off and moves the epoch (a reset ends every session).
func (s *Store) DisableTwoStep(ctx context.Context, name string) error {
	name = lookupName(name)
	return s.tx(ctx, func(tx *sql.Tx) error {
		var uid int64
		err := tx.QueryRowContext(ctx, s.sql(`UPDATE users SET two_step = 'none', epoch = epoch + 1, updated_at = ?
			WHERE name = ? RETURNING id`), unix(s.now()), name).Scan(&uid)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("user %s: %w", name, ErrNotFound)
		}
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, s.sql(`DELETE FROM authenticators WHERE user_id = ?`), uid)
		return err
	})
}

// AuthenticatorCount is how many authenticators an account has.
type AuthenticatorCount struct{ Confirmed, Pending int }

// AuthenticatorCounts returns the counts for every account that has any,
// by user id, without opening a single secret.
func (s *Store) AuthenticatorCounts(ctx context.Context) (map[int64]AuthenticatorCount, error) {
	rows, err := s.db.QueryContext(ctx, s.sql(`SELECT user_id, COUNT(*) FILTER (WHERE confirmed), COUNT(*) FILTER (WHERE NOT confirmed)
		FROM authenticators GROUP BY user_id`))
	if err != nil {
		return nil, fmt.Errorf("counting authenticators: %w", err)
	}
	defer rows.Close()
	out := map[int64]AuthenticatorCount{}
	for rows.Next() {
		var id int64
		var c AuthenticatorCount
		if err := rows.Scan(&id, &c.Confirmed, &c.Pending); err != nil {
			return nil, err
		}
		out[id] = c
	}
	return out, rows.Err()
}

// Account returns a user (without groups) and its confirmed
// authenticators in one query: what a sign-in decision needs, at the
// cost of one statement.
func (s *Store) Account(ctx context.Context, name string) (*User, []Authenticator, error) {
	name = lookupName(name)
	rows, err := s.stmtAccount.QueryContext(ctx, name)
	if err != nil {
		return nil, nil, fmt.Errorf("user %s: %w", name, err)
	}
	defer rows.Close()
	var u *User
	var auths []Authenticator
	for rows.Next() {
		var x User
		var twoStep string
		var created, updated int64
		var aID, aCreated, aLast sql.NullInt64
		var aLabel sql.NullString
		var sealed []byte
		var source string
		if err := rows.Scan(&x.ID, &x.Name, &x.DisplayName, &x.Email, &x.Phone, &x.PasswordHash, &twoStep,
			&x.Epoch, &x.Disabled, &x.Service, &created, &updated, &source, &x.ExternalID, &aID, &aLabel, &sealed, &aLast, &aCreated); err != nil {
			return nil, nil, fmt.Errorf("user %s: %w", name, err)
		}
		if u == nil {
			x.TwoStep, x.Source = TwoStep(twoStep), Source(source)
			x.Created, x.Updated = time.Unix(created, 0), time.Unix(updated, 0)
			u = &x
		}
		if !aID.Valid {
			continue
		}
		pt, err := s.sealer.Open(sealed, secretContext(u.ID))
		if err != nil {
			return nil, nil, fmt.Errorf("authenticator %d of user %s: %w", aID.Int64, u.Name, err)
		}
		auths = append(auths, Authenticator{ID: aID.Int64, UserID: u.ID, Label: aLabel.String, Secret: string(pt),
			Confirmed: true, LastStep: aLast.Int64, Created: time.Unix(aCreated.Int64, 0)})
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("user %s: %w", name, err)
	}
	if u == nil {
		return nil, nil, fmt.Errorf("user %s: %w", name, ErrNotFound)
	}
	if u.AppPasswords, err = s.AppPasswords(ctx, u.ID); err != nil {
		return nil, nil, fmt.Errorf("user %s: %w", name, err)
	}
	return u, auths, nil
}
