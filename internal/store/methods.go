package store

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"time"
)

// MethodKind is where a delivery method sends codes.
type MethodKind string

// Method kinds.
const (
	MethodEmail MethodKind = "email"
	MethodSMS   MethodKind = "sms"
)

// Method is a delivery method of an account: an e-mail address or a phone
// number that sign-in codes and alerts are sent to once it is verified.
type Method struct {
	ID     int64
	UserID int64
	Kind   MethodKind
	// Address is the e-mail address, or the phone number in E.164 form,
	// opened from its sealed form.
	Address    string
	Verified   bool
	Primary    bool
	Created    time.Time
	VerifiedAt time.Time
	// While unverified: the keyed hash of the confirmation code sent to
	// it, when that code stops working, and how many wrong codes were
	// tried against it.
	CodeHash     string
	CodeExpires  time.Time
	CodeFailures int
}

func methodContext(userID int64) string { return fmt.Sprintf("method user %d", userID) }

// addressHash finds an address again without keeping it in clear.
func (s *Store) addressHash(kind MethodKind, address string) string {
	m := hmac.New(sha256.New, s.sealer.Derive("method address"))
	m.Write([]byte(kind))
	m.Write([]byte{0})
	m.Write([]byte(address))
	return hex.EncodeToString(m.Sum(nil))
}

// AddMethod adds an unverified delivery method to an account, or returns
// the account's existing one with the same address (created is false).
// The address must already be in its canonical form.
func (s *Store) AddMethod(ctx context.Context, name string, kind MethodKind, address string) (m *Method, created bool, err error) {
	name = lookupName(name)
	if kind != MethodEmail && kind != MethodSMS {
		return nil, false, fmt.Errorf("method kind %q: want email or sms", kind)
	}
	if address == "" {
		return nil, false, errors.New("method: empty address")
	}
	h := s.addressHash(kind, address)
	var id int64
	err = s.tx(ctx, func(tx *sql.Tx) error {
		var uid int64
		if err := tx.QueryRowContext(ctx, s.sql(`SELECT id FROM users WHERE name = ?`), name).Scan(&uid); err != nil {
			if errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("user %s: %w", name, ErrNotFound)
			}
			return err
		}
		err := tx.QueryRowContext(ctx, s.sql(`SELECT id FROM delivery_methods WHERE user_id = ? AND address_hash = ?`), uid, h).Scan(&id)
		if err == nil {
			return nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		sealed, err := s.sealer.Seal([]byte(address), methodContext(uid))
		if err != nil {
			return err
		}
		if err := tx.QueryRowContext(ctx, s.sql(`INSERT INTO delivery_methods (user_id, kind, address, address_hash, created_at)
			VALUES (?, ?, ?, ?, ?) RETURNING id`), uid, string(kind), sealed, h, unix(s.now())).Scan(&id); err != nil {
			return err
		}
		created = true
		return nil
	})
	if err != nil {
		return nil, false, fmt.Errorf("user %s: adding a method: %w", name, err)
	}
	m, err = s.Method(ctx, id)
	return m, created, err
}

const methodColumns = `id, user_id, kind, address, verified, is_primary, code_hash, code_expires, code_failures, created_at, verified_at`

func (s *Store) scanMethod(r scanner) (*Method, error) {
	var m Method
	var kind string
	var sealed []byte
	var expires, created, verified int64
	if err := r.Scan(&m.ID, &m.UserID, &kind, &sealed, &m.Verified, &m.Primary, &m.CodeHash, &expires,
		&m.CodeFailures, &created, &verified); err != nil {
		return nil, err
	}
	pt, err := s.sealer.Open(sealed, methodContext(m.UserID))
	if err != nil {
		return nil, fmt.Errorf("method %d of user id %d: %w", m.ID, m.UserID, err)
	}
	m.Kind, m.Address = MethodKind(kind), string(pt)
	m.CodeExpires, m.Created = time.Unix(expires, 0), time.Unix(created, 0)
	if verified != 0 {
		m.VerifiedAt = time.Unix(verified, 0)
	}
	return &m, nil
}

// Method returns the delivery method with id.
func (s *Store) Method(ctx context.Context, id int64) (*Method, error) {
	m, err := s.scanMethod(s.db.QueryRowContext(ctx, s.sql(`SELECT `+methodColumns+` FROM delivery_methods WHERE id = ?`), id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("method %d: %w", id, ErrNotFound)
	}
	return m, err
}

// Methods returns an account's delivery methods, oldest first, with their
// addresses opened.
func (s *Store) Methods(ctx context.Context, userID int64) ([]Method, error) {
	rows, err := s.db.QueryContext(ctx, s.sql(`SELECT `+methodColumns+` FROM delivery_methods WHERE user_id = ? ORDER BY id`), userID)
	if err != nil {
		return nil, fmt.Errorf("methods: %w", err)
	}
	defer rows.Close()
	var out []Method
	for rows.Next() {
		m, err := s.scanMethod(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, *m)
	}
	return out, rows.Err()
}

// HasVerifiedMethod reports whether an account has a verified method of
// one of kinds, without opening any address.
func (s *Store) HasVerifiedMethod(ctx context.Context, userID int64, kinds ...MethodKind) (bool, error) {
	var n int
	for _, k := range kinds {
		if err := s.db.QueryRowContext(ctx, s.sql(`SELECT COUNT(*) FROM delivery_methods WHERE user_id = ? AND kind = ? AND verified = TRUE`),
			userID, string(k)).Scan(&n); err != nil {
			return false, fmt.Errorf("methods: %w", err)
		}
		if n > 0 {
			return true, nil
		}
	}
	return false, nil
}

// SetMethodCode records the keyed hash of a new confirmation code for a
// method, and forgets wrong tries against the old one.
func (s *Store) SetMethodCode(ctx context.Context, id int64, hash string, expires time.Time) error {
	return s.execOne(ctx, fmt.Sprintf("method %d", id),
		`UPDATE delivery_methods SET code_hash = ?, code_expires = ?, code_failures = 0 WHERE id = ?`, hash, unix(expires), id)
}

// MethodCodeFailed counts a wrong confirmation code against every
// unverified method of an account.
func (s *Store) MethodCodeFailed(ctx context.Context, userID int64) error {
	_, err := s.db.ExecContext(ctx, s.sql(`UPDATE delivery_methods SET code_failures = code_failures + 1
		WHERE user_id = ? AND verified = FALSE AND code_hash != ''`), userID)
	return err
}

// VerifyMethod marks a method verified and forgets its confirmation code.
// The account's first verified method becomes its primary one.
func (s *Store) VerifyMethod(ctx context.Context, id int64) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		var uid int64
		err := tx.QueryRowContext(ctx, s.sql(`UPDATE delivery_methods SET verified = TRUE, verified_at = ?, code_hash = '',
			code_expires = 0, code_failures = 0 WHERE id = ? RETURNING user_id`), unix(s.now()), id).Scan(&uid)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("method %d: %w", id, ErrNotFound)
		}
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, s.sql(`UPDATE delivery_methods SET is_primary = TRUE WHERE id = ? AND NOT EXISTS
			(SELECT 1 FROM delivery_methods WHERE user_id = ? AND is_primary = TRUE AND verified = TRUE)`), id, uid)
		return err
	})
}

// SetPrimaryMethod makes a verified method the one sign-in codes go to.
func (s *Store) SetPrimaryMethod(ctx context.Context, userID, id int64) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		var ok bool
		err := tx.QueryRowContext(ctx, s.sql(`SELECT verified FROM delivery_methods WHERE id = ? AND user_id = ?`), id, userID).Scan(&ok)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("method %d: %w", id, ErrNotFound)
		}
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("method %d is not verified yet", id)
		}
		if _, err := tx.ExecContext(ctx, s.sql(`UPDATE delivery_methods SET is_primary = (id = ?) WHERE user_id = ?`), id, userID); err != nil {
			return err
		}
		return nil
	})
}

// RemoveMethod deletes a method of an account.
func (s *Store) RemoveMethod(ctx context.Context, userID, id int64) error {
	return s.execOne(ctx, fmt.Sprintf("method %d", id), `DELETE FROM delivery_methods WHERE id = ? AND user_id = ?`, id, userID)
}

// SetTwoStep sets an account's two-step state without touching its
// authenticators: a verified delivery method turns two-step on, and a
// policy that wants a backup method keeps it pending.
func (s *Store) SetTwoStep(ctx context.Context, name string, ts TwoStep) error {
	switch ts {
	case TwoStepNone, TwoStepPending, TwoStepActive:
	default:
		return fmt.Errorf("two-step state %q is not none, pending or active", ts)
	}
	return s.updateUser(ctx, name, `two_step = ?`, string(ts))
}

func (s *Store) execOne(ctx context.Context, what, q string, args ...any) error {
	res, err := s.db.ExecContext(ctx, s.sql(q), args...)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("%s: %w", what, ErrNotFound)
	}
	return nil
}
