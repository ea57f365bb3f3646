// Package account carries out the changes to accounts that the command
// line, the import and the self-service portal share: adding a user,
// setting a password, authenticators, delivery methods, recovery codes,
// turning two-step off, disabling, enabling and deleting. Callers read
// their own input and present the results; the rules (what a valid
// address is, that confirming a factor settles two-step and alerts the
// owner) live here once.
package account

import (
	"context"
	"errors"
	"fmt"
	"net/mail"
	"time"

	"github.com/stepgate/stepgate/internal/delivery"
	"github.com/stepgate/stepgate/internal/method"
	"github.com/stepgate/stepgate/internal/password"
	"github.com/stepgate/stepgate/internal/store"
	"github.com/stepgate/stepgate/internal/verifier"
)

// Service changes the accounts of one store.
type Service struct {
	st *store.Store
	o  Options
}

// Options configure New. Only the actions that send or check codes use
// them, so the command line fills them from the configuration only when
// one of those runs: a broken configuration must not stop `user add`.
type Options struct {
	// TOTP and Issuer are the code parameters that authenticators are
	// enrolled and confirmed with.
	TOTP   verifier.TOTP
	Issuer string
	// Delivery gives the delivery of codes and alerts to an action that
	// needs it; done is called when the action has finished with it. A
	// nil Delivery fails those actions.
	Delivery func() (d *delivery.Delivery, done func(), err error)
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Directory, in proxy mode, is asked about a person without a row
	// when an authenticator is enrolled for them: the row is made then,
	// bound to the entry's identity.
	Directory verifier.Directory
	// MailAccounts says that a mail server checks passwords (IMAP-only):
	// enrolling a login name without a row makes a mail account's row.
	MailAccounts bool
}

// New returns the account actions on st.
func New(st *store.Store, o Options) *Service {
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Service{st: st, o: o}
}

// InvalidError is a request that is wrong in itself (a malformed name,
// address or number), as opposed to an action that failed: the command
// line answers it with usage and exit code 2.
type InvalidError struct {
	// Field names what was wrong: "name", "email", "phone", "group",
	// "password" or "address" (a delivery method's).
	Field string
	Err   error
}

func (e *InvalidError) Error() string { return e.Err.Error() }
func (e *InvalidError) Unwrap() error { return e.Err }

func invalid(field string, err error) error { return &InvalidError{Field: field, Err: err} }

// errEmptyPassword refuses an empty password: it could never sign in
// (an empty bind is not a sign-in, RFC 4513 5.1.2).
var errEmptyPassword = errors.New("empty password")

// notFound says plainly that there is no such account, and still is
// store.ErrNotFound to errors.Is.
type notFound struct{ name string }

func (e notFound) Error() string {
	return fmt.Sprintf("no account named %q (stepgate user list shows them)", e.name)
}
func (e notFound) Unwrap() error { return store.ErrNotFound }

// existing looks an account up, saying plainly when there is none.
func (s *Service) existing(ctx context.Context, name string) (*store.User, error) {
	u, err := s.st.User(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		return nil, notFound{name}
	}
	return u, err
}

// NewUser is an account to add.
type NewUser struct {
	Name        string
	DisplayName string
	Email       string
	Phone       string // any international form; stored as E.164
	Groups      []string
	Service     bool   // an application's account: a password alone, LDAP only
	Password    string // in clear; only its hash is kept
}

// Check validates everything of n but the password, without a store, so
// that a caller can refuse a bad request before asking for the password.
// It returns n with the phone number in E.164 form; errors are
// *InvalidError.
func (n NewUser) Check() (NewUser, error) {
	if _, err := store.AccountName(n.Name); err != nil {
		return n, invalid("name", err)
	}
	if n.Email != "" {
		addr, err := mail.ParseAddress(n.Email)
		if err != nil || addr.Address != n.Email {
			return n, invalid("email", fmt.Errorf("%q is not a plain e-mail address", n.Email))
		}
	}
	if n.Phone != "" {
		p, err := method.ParsePhone(n.Phone, "")
		if err != nil {
			return n, invalid("phone", err)
		}
		n.Phone = p
	}
	for _, g := range n.Groups {
		if err := store.ValidName(g); err != nil {
			return n, invalid("group", err)
		}
	}
	return n, nil
}

// AddUser checks n, hashes its password and adds the account.
func (s *Service) AddUser(ctx context.Context, n NewUser) (*store.User, error) {
	n, err := n.Check()
	if err != nil {
		return nil, err
	}
	hash, err := hashPassword(n.Password)
	if err != nil {
		return nil, err
	}
	return s.st.AddUser(ctx, store.NewUser{Name: n.Name, DisplayName: n.DisplayName, Email: n.Email,
		Phone: n.Phone, PasswordHash: hash, Service: n.Service, Groups: n.Groups})
}

func hashPassword(pw string) (string, error) {
	if pw == "" {
		return "", invalid("password", errEmptyPassword)
	}
	return password.Hash(pw)
}

// SetPassword sets the password of user; every session of the account
// ends (the store moves its epoch).
func (s *Service) SetPassword(ctx context.Context, user, pw string) error {
	hash, err := hashPassword(pw)
	if err != nil {
		return err
	}
	return s.st.SetPassword(ctx, user, hash)
}

// Summary is an account as listings show it: never a secret.
type Summary struct {
	Name           string   `json:"name"`
	DisplayName    string   `json:"display_name"`
	Email          string   `json:"email"`
	Phone          string   `json:"phone"`
	TwoStep        string   `json:"two_step"`
	Authenticators int      `json:"authenticators"`
	Pending        int      `json:"pending_authenticators"`
	Service        bool     `json:"service"`
	Disabled       bool     `json:"disabled"`
	Groups         []string `json:"groups"` // never nil
	// Source is who checks the password: local, directory or mail.
	Source     string    `json:"source"`
	ExternalID string    `json:"external_id,omitempty"`
	Created    time.Time `json:"created"`
}

// List summarises every account, without opening a single secret.
func (s *Service) List(ctx context.Context) ([]Summary, error) {
	users, err := s.st.Users(ctx)
	if err != nil {
		return nil, err
	}
	counts, err := s.st.AuthenticatorCounts(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Summary, 0, len(users))
	for _, u := range users {
		n := counts[u.ID]
		g := u.Groups
		if g == nil {
			g = []string{}
		}
		out = append(out, Summary{Name: u.Name, DisplayName: u.DisplayName, Email: u.Email, Phone: u.Phone,
			TwoStep: string(u.TwoStep), Authenticators: n.Confirmed, Pending: n.Pending, Service: u.Service,
			Disabled: u.Disabled, Groups: g, Source: string(u.Source), ExternalID: u.ExternalID, Created: u.Created.UTC()})
	}
	return out, nil
}

// Disable disables user: its sessions are dead (a running server ends
// them at its next refresh). It returns the account as it was before, so
// that a caller can say whether it already was disabled.
func (s *Service) Disable(ctx context.Context, user string) (*store.User, error) {
	u, err := s.existing(ctx, user)
	if err != nil {
		return nil, err
	}
	if err := s.st.SetDisabled(ctx, u.Name, true); err != nil {
		return nil, err
	}
	return u, nil
}

// Enable enables a disabled user; changed is false when it was not
// disabled, and then nothing is touched: enabling moves the epoch, which
// would end the live sessions of an account nobody meant to touch.
func (s *Service) Enable(ctx context.Context, user string) (u *store.User, changed bool, err error) {
	u, err = s.existing(ctx, user)
	if err != nil {
		return nil, false, err
	}
	if !u.Disabled {
		return u, false, nil
	}
	if err := s.st.SetDisabled(ctx, u.Name, false); err != nil {
		return nil, false, err
	}
	return u, true, nil
}

// Delete deletes user for good.
func (s *Service) Delete(ctx context.Context, user string) error { return s.st.DeleteUser(ctx, user) }
