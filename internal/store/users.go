package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/stepgate/stepgate/internal/username"
)

// TwoStep is an account's two-step verification state.
type TwoStep string

const (
	// TwoStepNone: no authenticator was ever confirmed.
	TwoStepNone TwoStep = "none"
	// TwoStepPending: an authenticator is enrolled but not yet confirmed
	// with a first code.
	TwoStepPending TwoStep = "pending"
	// TwoStepActive: at least one authenticator is confirmed.
	TwoStepActive TwoStep = "active"
)

// User is one account.
type User struct {
	ID           int64
	Name         string
	DisplayName  string
	Email        string
	Phone        string
	PasswordHash string
	TwoStep      TwoStep
	// Epoch changes on every password change, two-step reset, disable
	// or revoke: sessions made under an older epoch are dead.
	Epoch    int64
	Disabled bool
	// Service marks an application's account: it binds to the LDAP
	// directory with a password alone and can never sign in to mail.
	Service bool
	Groups  []string
	// Source says who checks the password: SourceLocal (PasswordHash),
	// SourceDirectory (an upstream LDAP bind) or SourceMail (an upstream
	// IMAP login). The last two have no hash.
	Source Source
	// ExternalID is the directory's stable identity of the person's
	// entry (entryUUID, objectGUID), "" when none: a rename upstream
	// finds the row by it.
	ExternalID string
	Created    time.Time
	Updated    time.Time
	// AppPasswords are filled by Account only: what a sign-in decision
	// needs of them.
	AppPasswords []AppPassword
}

// Source is who checks an account's password.
type Source string

// Sources.
const (
	SourceLocal     Source = "local"
	SourceDirectory Source = "directory"
	SourceMail      Source = "mail"
)

// NewUser is what AddUser needs.
type NewUser struct {
	Name         string
	DisplayName  string
	Email        string
	Phone        string
	PasswordHash string
	Service      bool
	Groups       []string
}

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)
var groupRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// AccountName returns the one form under which an account is stored and
// found: the PRECIS UsernameCaseMapped form (RFC 8265, see package
// username), which must then be 1 to 64 letters, digits, '.', '_' or '-',
// starting with a letter or digit. "Alice" and full-width "ａｌｉｃｅ" are
// both "alice". The character rule keeps names safe inside an LDAP DN and
// an IMAP atom.
func AccountName(name string) (string, error) {
	c, err := username.Canonical(name)
	if err != nil {
		return "", fmt.Errorf("user name: %w", err)
	}
	if !nameRE.MatchString(c) {
		return "", fmt.Errorf("name %q is not valid: use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit", c)
	}
	return c, nil
}

// lookupName is the form a name is looked up under. A name the profile
// rejects is left as it is: no stored name can equal it, so it finds
// nothing, which is the answer its caller should get.
func lookupName(name string) string {
	if c, err := username.Canonical(name); err == nil {
		return c
	}
	return name
}

// ValidName reports whether name can be a group name: 1 to 64 letters,
// digits, '.', '_' or '-', starting with a letter or digit.
func ValidName(name string) error {
	if !groupRE.MatchString(name) {
		return fmt.Errorf("name %q is not valid: use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit", name)
	}
	return nil
}

const userColumns = `id, name, display_name, email, phone, password_hash, two_step, epoch, disabled, service, created_at, updated_at, source, COALESCE(external_id, '')`

type scanner interface{ Scan(...any) error }

func scanUser(r scanner) (*User, error) {
	var u User
	var twoStep string
	var created, updated int64
	var source string
	if err := r.Scan(&u.ID, &u.Name, &u.DisplayName, &u.Email, &u.Phone, &u.PasswordHash, &twoStep,
		&u.Epoch, &u.Disabled, &u.Service, &created, &updated, &source, &u.ExternalID); err != nil {
		return nil, err
	}
	u.TwoStep, u.Source = TwoStep(twoStep), Source(source)
	u.Created, u.Updated = time.Unix(created, 0), time.Unix(updated, 0)
	return &u, nil
}

// AddUser creates an account.
func (s *Store) AddUser(ctx context.Context, nu NewUser) (*User, error) {
	name, err := AccountName(nu.Name)
	if err != nil {
		return nil, err
	}
	nu.Name = name
	if nu.PasswordHash == "" {
		return nil, fmt.Errorf("user %s: no password", nu.Name)
	}
	for _, g := range nu.Groups {
		if err := ValidName(g); err != nil {
			return nil, fmt.Errorf("group: %w", err)
		}
	}
	now := unix(s.now())
	err = s.tx(ctx, func(tx *sql.Tx) error {
		var id int64
		err := tx.QueryRowContext(ctx, s.sql(`INSERT INTO users (name, display_name, email, phone, password_hash, service, created_at, updated_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`), nu.Name, nu.DisplayName, nu.Email, nu.Phone, nu.PasswordHash, nu.Service, now, now).Scan(&id)
		if err != nil {
			if s.d.isUnique(err) {
				return fmt.Errorf("user %s: %w", nu.Name, ErrExists)
			}
			return fmt.Errorf("user %s: %w", nu.Name, err)
		}
		return s.addToGroups(ctx, tx, id, nu.Groups)
	})
	if err != nil {
		return nil, err
	}
	return s.User(ctx, nu.Name)
}

// AddExternalUser creates the row of an account whose password an
// upstream checks (source directory or mail): it holds no password hash,
// only what stepgate owns. externalID is the directory's identity of the
// entry ("" for mail accounts).
func (s *Store) AddExternalUser(ctx context.Context, name string, source Source, externalID string) (*User, error) {
	name, err := AccountName(name)
	if err != nil {
		return nil, err
	}
	if source != SourceDirectory && source != SourceMail {
		return nil, fmt.Errorf("user %s: source %q has no upstream", name, source)
	}
	var ext any
	if externalID != "" {
		ext = externalID
	}
	now := unix(s.now())
	err = s.tx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, s.sql(`INSERT INTO users (name, password_hash, source, external_id, created_at, updated_at)
			VALUES (?, '', ?, ?, ?, ?)`), name, string(source), ext, now, now)
		if s.d.isUnique(err) {
			return fmt.Errorf("user %s: %w", name, ErrExists)
		}
		if err != nil {
			return fmt.Errorf("user %s: %w", name, err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return s.User(ctx, name)
}

// UserByExternalID returns the account bound to a directory identity, or
// ErrNotFound.
func (s *Store) UserByExternalID(ctx context.Context, id string) (*User, error) {
	if id == "" {
		return nil, fmt.Errorf("external id: %w", ErrNotFound)
	}
	u, err := scanUser(s.db.QueryRowContext(ctx, s.sql(`SELECT `+userColumns+` FROM users WHERE external_id = ?`), id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("external id %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("external id %s: %w", id, err)
	}
	return u, nil
}

// FollowDirectory makes the row of a directory identity carry the name
// the directory gives it now (after a rename upstream) and binds a row
// without an identity to it. A rename moves the epoch, so that sessions
// made under the old name end; binding alone does not. The row keeps its authenticators. A name
// held by another row is ErrExists.
func (s *Store) FollowDirectory(ctx context.Context, id int64, name, externalID string) error {
	name, err := AccountName(name)
	if err != nil {
		return err
	}
	res, err := s.db.ExecContext(ctx, s.sql(`UPDATE users SET name = ?, external_id = ?,
		epoch = epoch + CASE WHEN name = ? THEN 0 ELSE 1 END, updated_at = ? WHERE id = ?`),
		name, externalID, name, unix(s.now()), id)
	s.noteWrite(err)
	if s.d.isUnique(err) {
		return fmt.Errorf("user %s: %w", name, ErrExists)
	}
	if err != nil {
		return fmt.Errorf("user %s: %w", name, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("user %s: %w", name, ErrNotFound)
	}
	return nil
}

func (s *Store) addToGroups(ctx context.Context, tx *sql.Tx, userID int64, groups []string) error {
	for _, g := range groups {
		if _, err := tx.ExecContext(ctx, s.sql(`INSERT INTO groups (name) VALUES (?) ON CONFLICT (name) DO NOTHING`), g); err != nil {
			return fmt.Errorf("group %s: %w", g, err)
		}
		if _, err := tx.ExecContext(ctx, s.sql(`INSERT INTO group_members (group_id, user_id)
			SELECT id, ? FROM groups WHERE name = ? ON CONFLICT DO NOTHING`), userID, g); err != nil {
			return fmt.Errorf("group %s: %w", g, err)
		}
	}
	return nil
}

// User returns the account called name (compared without regard to case).
func (s *Store) User(ctx context.Context, name string) (*User, error) {
	name = lookupName(name)
	u, err := scanUser(s.stmtUser.QueryRowContext(ctx, name))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("user %s: %w", name, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("user %s: %w", name, err)
	}
	if u.Groups, err = s.userGroups(ctx, u.ID); err != nil {
		return nil, err
	}
	return u, nil
}

func (s *Store) userGroups(ctx context.Context, id int64) ([]string, error) {
	rows, err := s.stmtGroups.QueryContext(ctx, id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var g string
		if err := rows.Scan(&g); err != nil {
			return nil, err
		}
		out = append(out, g)
	}
	return out, rows.Err()
}

// Users lists every account, ordered by name, with their groups.
func (s *Store) Users(ctx context.Context) ([]*User, error) {
	rows, err := s.db.QueryContext(ctx, s.sql(`SELECT `+userColumns+` FROM users ORDER BY name`))
	if err != nil {
		return nil, fmt.Errorf("listing users: %w", err)
	}
	var out []*User
	byID := map[int64]*User{}
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			rows.Close()
			return nil, fmt.Errorf("listing users: %w", err)
		}
		out = append(out, u)
		byID[u.ID] = u
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing users: %w", err)
	}
	mrows, err := s.db.QueryContext(ctx, s.sql(`SELECT m.user_id, g.name FROM group_members m JOIN groups g ON g.id = m.group_id ORDER BY g.name`))
	if err != nil {
		return nil, fmt.Errorf("listing groups: %w", err)
	}
	defer mrows.Close()
	for mrows.Next() {
		var id int64
		var g string
		if err := mrows.Scan(&id, &g); err != nil {
			return nil, err
		}
		if u := byID[id]; u != nil {
			u.Groups = append(u.Groups, g)
		}
	}
	return out, mrows.Err()
}

// Group is a named set of accounts.
type Group struct {
	Name    string
	Members []string
}

// Groups lists every group with its members, ordered by name.
func (s *Store) Groups(ctx context.Context) ([]Group, error) {
	rows, err := s.db.QueryContext(ctx, s.sql(`SELECT g.name, COALESCE(u.name, '') FROM groups g
		LEFT JOIN group_members m ON m.group_id = g.id LEFT JOIN users u ON u.id = m.user_id
		ORDER BY g.name, u.name`))
	if err != nil {
		return nil, fmt.Errorf("listing groups: %w", err)
	}
	defer rows.Close()
	var out []Group
	for rows.Next() {
		var g, u string
		if err := rows.Scan(&g, &u); err != nil {
			return nil, err
		}
		if len(out) == 0 || !strings.EqualFold(out[len(out)-1].Name, g) {
			out = append(out, Group{Name: g})
		}
		if u != "" {
			out[len(out)-1].Members = append(out[len(out)-1].Members, u)
		}
	}
	return out, rows.Err()
}

// AddToGroups puts an account into groups, creating them as needed.
func (s *Store) AddToGroups(ctx context.Context, name string, groups []string) error {
	name = lookupName(name)
	for _, g := range groups {
		if err := ValidName(g); err != nil {
			return fmt.Errorf("group: %w", err)
		}
	}
	return s.tx(ctx, func(tx *sql.Tx) error {
		var id int64
		if err := tx.QueryRowContext(ctx, s.sql(`SELECT id FROM users WHERE name = ?`), name).Scan(&id); err != nil {
			if errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("user %s: %w", name, ErrNotFound)
			}
			return err
		}
		return s.addToGroups(ctx, tx, id, groups)
	})
}

// SetPassword replaces an account's password hash and moves its epoch, so
// that every session made with the old password ends.
func (s *Store) SetPassword(ctx context.Context, name, hash string) error {
	if hash == "" {
		return fmt.Errorf("user %s: no password", name)
	}
	return s.updateUser(ctx, name, `password_hash = ?, epoch = epoch + 1`, hash)
}

// SetDisabled disables or enables an account; either moves the epoch.
func (s *Store) SetDisabled(ctx context.Context, name string, disabled bool) error {
	return s.updateUser(ctx, name, `disabled = ?, epoch = epoch + 1`, disabled)
}

// BumpEpoch ends every session of the account (revocation).
func (s *Store) BumpEpoch(ctx context.Context, name string) error {
	return s.updateUser(ctx, name, `epoch = epoch + 1`)
}

// DeleteUser removes an account with its authenticators and memberships.
func (s *Store) DeleteUser(ctx context.Context, name string) error {
	name = lookupName(name)
	res, err := s.db.ExecContext(ctx, s.sql(`DELETE FROM users WHERE name = ?`), name)
	if err != nil {
		return fmt.Errorf("user %s: %w", name, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("user %s: %w", name, ErrNotFound)
	}
	return nil
}

func (s *Store) updateUser(ctx context.Context, name, set string, args ...any) error {
	name = lookupName(name)
	args = append(args, unix(s.now()), name)
	res, err := s.db.ExecContext(ctx, s.sql(`UPDATE users SET `+set+`, updated_at = ? WHERE name = ?`), args...)
	if err != nil {
		return fmt.Errorf("user %s: %w", name, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("user %s: %w", name, ErrNotFound)
	}
	return nil
}

func (s *Store) tx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		s.noteWrite(err)
		return err
	}
	err = tx.Commit()
	s.noteWrite(err)
	return err
}
