package store

import (
	"context"
	"database/sql"
	"fmt"
)

// Imported is an account brought over from another system with its
// password hash ({SSHA}, bcrypt, argon2id) and, optionally, an already
// confirmed authenticator secret.
type Imported struct {
	NewUser
	// TOTPSecret (base32), when set, becomes a confirmed authenticator
	// labelled "imported" and turns two-step on.
	TOTPSecret string
}

// Import adds many accounts in one transaction: all of them, or none.
// A migration of thousands of accounts then costs one durable commit
// rather than three per account.
func (s *Store) Import(ctx context.Context, users []Imported) error {
	now := unix(s.now())
	return s.tx(ctx, func(tx *sql.Tx) error {
		insUser, err := tx.PrepareContext(ctx, s.sql(`INSERT INTO users (name, display_name, email, phone, password_hash, service, two_step, created_at, updated_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`))
		if err != nil {
			return err
		}
		defer insUser.Close()
		insAuth, err := tx.PrepareContext(ctx, s.sql(`INSERT INTO authenticators (user_id, label, secret, confirmed, created_at) VALUES (?, 'imported', ?, TRUE, ?)`))
		if err != nil {
			return err
		}
		defer insAuth.Close()
		for _, u := range users {
			name, err := AccountName(u.Name)
			if err != nil {
				return err
			}
			u.Name = name
			if u.PasswordHash == "" {
				return fmt.Errorf("user %s: no password", u.Name)
			}
			state := TwoStepNone
			if u.TOTPSecret != "" {
				state = TwoStepActive
			}
			var id int64
			err = insUser.QueryRowContext(ctx, u.Name, u.DisplayName, u.Email, u.Phone, u.PasswordHash, u.Service, state, now, now).Scan(&id)
			if err != nil {
				if s.d.isUnique(err) {
					return fmt.Errorf("user %s: %w", u.Name, ErrExists)
				}
				return fmt.Errorf("user %s: %w", u.Name, err)
			}
			if err := s.addToGroups(ctx, tx, id, u.Groups); err != nil {
				return err
			}
			if u.TOTPSecret != "" {
				sealed, err := s.sealer.Seal([]byte(u.TOTPSecret), secretContext(id))
				if err != nil {
					return err
				}
				if _, err := insAuth.ExecContext(ctx, id, sealed, now); err != nil {
					return fmt.Errorf("user %s: %w", u.Name, err)
				}
			}
		}
		return nil
	})
}
