package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
)

// Imported is an account brought over from another system with its
// password hash (any scheme package password verifies), its confirmed
// authenticators and its recovery codes.
type Imported struct {
	NewUser
	// TOTPSecret (base32), when set, becomes a confirmed authenticator
	// labelled "imported" and turns two-step on.
	TOTPSecret string
	// Authenticators are further confirmed authenticators, each with its
	// own label; any one turns two-step on.
	Authenticators []ImportedAuthenticator
	// RecoveryCodes are unused recovery codes in clear; only the hashes
	// that ImportOptions.RecoveryHash makes of them are kept.
	RecoveryCodes []string
	Disabled      bool
	// Existing adds the authenticators and recovery codes to the account
	// of that name, which must exist; the rest of NewUser is unused.
	Existing bool
}

// ImportedAuthenticator is an authenticator that another system has
// seen working.
type ImportedAuthenticator struct {
	Label  string
	Secret string // base32
	// LastStep is the last time step the other system accepted: its code
	// stays used here (RFC 6238 5.2 across the move).
	LastStep int64
}

// ImportOptions tune ImportWith.
type ImportOptions struct {
	// RecoveryHash makes the stored hash of an account's recovery code
	// once the account has its id (recovery.Service.Hash); it must be set
	// when any account carries recovery codes.
	RecoveryHash func(userID int64, code string) string
}

// Import adds many accounts in one transaction: all of them, or none.
// A migration of thousands of accounts then costs one durable commit
// rather than three per account.
func (s *Store) Import(ctx context.Context, users []Imported) error {
	return s.ImportWith(ctx, users, ImportOptions{})
}

// ImportWith is Import with options.
func (s *Store) ImportWith(ctx context.Context, users []Imported, o ImportOptions) error {
	now := unix(s.now())
	return s.tx(ctx, func(tx *sql.Tx) error {
		insUser, err := tx.PrepareContext(ctx, s.sql(`INSERT INTO users (name, display_name, email, phone, password_hash, service, two_step, disabled, created_at, updated_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`))
		if err != nil {
			return err
		}
		defer insUser.Close()
		insAuth, err := tx.PrepareContext(ctx, s.sql(`INSERT INTO authenticators (user_id, label, secret, confirmed, last_step, created_at) VALUES (?, ?, ?, TRUE, ?, ?)`))
		if err != nil {
			return err
		}
		defer insAuth.Close()
		insCode, err := tx.PrepareContext(ctx, s.sql(`INSERT INTO recovery_codes (user_id, hash, created_at) VALUES (?, ?, ?)`))
		if err != nil {
			return err
		}
		defer insCode.Close()
		for _, u := range users {
			name, err := AccountName(u.Name)
			if err != nil {
				return err
			}
			u.Name = name
			auths := u.Authenticators
			if u.TOTPSecret != "" {
				auths = append([]ImportedAuthenticator{{Label: "imported", Secret: u.TOTPSecret}}, auths...)
			}
			state := TwoStepNone
			if len(auths) > 0 {
				state = TwoStepActive
			}
			var id int64
			if u.Existing {
				if id, err = s.importInto(ctx, tx, u.Name, auths, now); err != nil {
					return err
				}
			} else {
				if u.PasswordHash == "" {
					return fmt.Errorf("user %s: no password", u.Name)
				}
				err = insUser.QueryRowContext(ctx, u.Name, u.DisplayName, u.Email, u.Phone, u.PasswordHash, u.Service, state, u.Disabled, now, now).Scan(&id)
				if err != nil {
					if s.d.isUnique(err) {
						return fmt.Errorf("user %s: %w", u.Name, ErrExists)
					}
					return fmt.Errorf("user %s: %w", u.Name, err)
				}
				if err := s.addToGroups(ctx, tx, id, u.Groups); err != nil {
					return err
				}
			}
			for _, a := range auths {
				label := strings.TrimSpace(a.Label)
				if label == "" || len(label) > 64 || a.Secret == "" {
					return fmt.Errorf("user %s: authenticator %q: a label of 1 to 64 characters and a secret are needed", u.Name, a.Label)
				}
				sealed, err := s.sealer.Seal([]byte(a.Secret), secretContext(id))
				if err != nil {
					return err
				}
				if _, err := insAuth.ExecContext(ctx, id, label, sealed, a.LastStep, now); err != nil {
					return fmt.Errorf("user %s: authenticator %q: %w", u.Name, label, err)
				}
			}
			if len(u.RecoveryCodes) > 0 && o.RecoveryHash == nil {
				return errors.New("store: recovery codes to import, but no RecoveryHash")
			}
			for _, c := range u.RecoveryCodes {
				if _, err := insCode.ExecContext(ctx, id, o.RecoveryHash(id, c), now); err != nil {
					if s.d.isUnique(err) {
						return fmt.Errorf("user %s: the same recovery code twice", u.Name)
					}
					return fmt.Errorf("user %s: recovery codes: %w", u.Name, err)
				}
			}
		}
		return nil
	})
}

// importInto finds the existing account name for an import that adds to
// it, refuses an authenticator label it already has, and turns two-step
// on when authenticators come.
func (s *Store) importInto(ctx context.Context, tx *sql.Tx, name string, auths []ImportedAuthenticator, now int64) (int64, error) {
	var id int64
	if err := tx.QueryRowContext(ctx, s.sql(`SELECT id FROM users WHERE name = ?`), name).Scan(&id); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return 0, fmt.Errorf("user %s: %w", name, ErrNotFound)
		}
		return 0, fmt.Errorf("user %s: %w", name, err)
	}
	for _, a := range auths {
		var n int
		if err := tx.QueryRowContext(ctx, s.sql(`SELECT COUNT(*) FROM authenticators WHERE user_id = ? AND label = ?`), id, strings.TrimSpace(a.Label)).Scan(&n); err != nil {
			return 0, err
		}
		if n > 0 {
			return 0, fmt.Errorf("user %s: authenticator %q: %w", name, a.Label, ErrExists)
		}
	}
	if len(auths) > 0 {
		if _, err := tx.ExecContext(ctx, s.sql(`UPDATE users SET two_step = 'active', updated_at = ? WHERE id = ?`), now, id); err != nil {
			return 0, fmt.Errorf("user %s: %w", name, err)
		}
	}
	return id, nil
}
