package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// ReplaceRecoveryCodes gives an account a new set of recovery codes, by
// their keyed hashes; every code of the previous set stops working.
func (s *Store) ReplaceRecoveryCodes(ctx context.Context, name string, hashes []string) error {
	name = lookupName(name)
	return s.tx(ctx, func(tx *sql.Tx) error {
		var uid int64
		if err := tx.QueryRowContext(ctx, s.sql(`SELECT id FROM users WHERE name = ?`), name).Scan(&uid); err != nil {
			if errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("user %s: %w", name, ErrNotFound)
			}
			return err
		}
		if _, err := tx.ExecContext(ctx, s.sql(`DELETE FROM recovery_codes WHERE user_id = ?`), uid); err != nil {
			return fmt.Errorf("user %s: recovery codes: %w", name, err)
		}
		now := unix(s.now())
		for _, h := range hashes {
			if _, err := tx.ExecContext(ctx, s.sql(`INSERT INTO recovery_codes (user_id, hash, created_at) VALUES (?, ?, ?)`), uid, h, now); err != nil {
				return fmt.Errorf("user %s: recovery codes: %w", name, err)
			}
		}
		return nil
	})
}

// UnusedRecoveryCode returns the id of an account's unused recovery code
// with the keyed hash hash.
func (s *Store) UnusedRecoveryCode(ctx context.Context, userID int64, hash string) (id int64, ok bool, err error) {
	err = s.db.QueryRowContext(ctx, s.sql(`SELECT id FROM recovery_codes WHERE user_id = ? AND hash = ? AND used_at = 0`),
		userID, hash).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("recovery codes: %w", err)
	}
	return id, true, nil
}

// UseRecoveryCode uses up a recovery code. It reports false when it was
// used already (by another process too) or is gone with its set.
func (s *Store) UseRecoveryCode(ctx context.Context, id int64) (bool, error) {
	res, err := s.db.ExecContext(ctx, s.sql(`UPDATE recovery_codes SET used_at = ? WHERE id = ? AND used_at = 0`), unix(s.now()), id)
	s.noteWrite(err)
	if err != nil {
		return false, fmt.Errorf("recovery code %d: %w", id, err)
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// RecoveryCodesLeft is how many unused recovery codes an account has.
func (s *Store) RecoveryCodesLeft(ctx context.Context, userID int64) (int, error) {
	var n int
	err := s.db.QueryRowContext(ctx, s.sql(`SELECT COUNT(*) FROM recovery_codes WHERE user_id = ? AND used_at = 0`), userID).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("recovery codes: %w", err)
	}
	return n, nil
}
