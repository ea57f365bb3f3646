// Package method manages the delivery methods of accounts: the e-mail
// addresses and phone numbers that sign-in codes are sent to. Each is
// verified with a code sent to it before it is used, and confirming one
// turns two-step verification on (or leaves it pending while policy wants
// a backup method that does not exist yet).
package method

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"slices"
	"strconv"
	"time"

	"github.com/stepgate/stepgate/internal/notify"
	"github.com/stepgate/stepgate/internal/store"
)

// Policy says which methods may receive codes and what two-step needs.
type Policy struct {
	// Kinds may receive codes; others cannot be added.
	Kinds []store.MethodKind
	// RequireBackup keeps two-step pending until the account has two
	// ways to get a code: authenticators and verified methods together.
	RequireBackup bool
	// ConfirmLifetime is how long a confirmation code works (1 h).
	ConfirmLifetime time.Duration
	// PhoneRegion reads national phone numbers ("GB"); "" wants +CC.
	PhoneRegion string
}

// Allows reports whether kind may receive codes.
func (p Policy) Allows(kind store.MethodKind) bool { return slices.Contains(p.Kinds, kind) }

// MaxConfirmFailures is how many wrong confirmation codes an account may
// try before its pending codes stop working.
const MaxConfirmFailures = 5

// Errors.
var (
	ErrBadCode         = errors.New("the code matches no pending method (or it expired: add the method again for a new one)")
	ErrAlreadyVerified = errors.New("already verified")
	ErrLastFactor      = errors.New("it is the account's only second factor")
)

// Service adds, confirms, lists and removes delivery methods.
type Service struct {
	st       *store.Store
	channels map[store.MethodKind]*notify.Channel
	alerts   *notify.Alerter
	policy   Policy
	key      []byte
	service  string
	now      func() time.Time
	log      *slog.Logger
}

// Options configure New.
type Options struct {
	Service string // name in messages; "stepgate" when empty
	Log     *slog.Logger
	Now     func() time.Time
}

// New returns a Service. channels are the configured ways to send (a kind
// without one cannot be added); alerts may be nil.
func New(st *store.Store, channels map[store.MethodKind]*notify.Channel, alerts *notify.Alerter, p Policy, o Options) *Service {
	if p.ConfirmLifetime <= 0 {
		p.ConfirmLifetime = time.Hour
	}
	if o.Service == "" {
		o.Service = "stepgate"
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Service{st: st, channels: channels, alerts: alerts, policy: p, key: st.Sealer().Derive("method code"),
		service: o.Service, now: o.Now, log: o.Log}
}

// Policy is the policy in force.
func (s *Service) Policy() Policy { return s.policy }

// RandomDigits returns n digits from crypto/rand, each uniform.
func RandomDigits(n int) (string, error) {
	b := make([]byte, n)
	ten := big.NewInt(10)
	for i := range b {
		d, err := rand.Int(rand.Reader, ten)
		if err != nil {
			return "", fmt.Errorf("random code: %w", err)
		}
		b[i] = byte('0' + d.Int64())
	}
	return string(b), nil
}

func (s *Service) codeHash(id int64, code string) string {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte(strconv.FormatInt(id, 10)))
	m.Write([]byte{0})
	m.Write([]byte(code))
	return hex.EncodeToString(m.Sum(nil))
}

// Normalize checks an address of kind and returns its canonical form.
func (s *Service) Normalize(kind store.MethodKind, address string) (string, error) {
	switch kind {
	case store.MethodSMS:
		return ParsePhone(address, s.policy.PhoneRegion)
	case store.MethodEmail:
		return ParseEmail(address)
	}
	return "", fmt.Errorf("method kind %q: want email or sms", kind)
}

// Add adds a method to user's account (or finds the unverified one with
// the same address) and sends a new confirmation code to it.
func (s *Service) Add(ctx context.Context, user string, kind store.MethodKind, address string) (*store.Method, error) {
	if !s.policy.Allows(kind) {
		return nil, fmt.Errorf("%s may not receive codes here (delivery.methods is %v)", kind, s.policy.Kinds)
	}
	ch := s.channels[kind]
	if ch == nil {
		return nil, fmt.Errorf("no way to send %s is set up (delivery.%s in the configuration)", kindWord(kind), kind)
	}
	addr, err := s.Normalize(kind, address)
	if err != nil {
		return nil, err
	}
	u, err := s.st.User(ctx, user)
	if err != nil {
		return nil, err
	}
	if u.Service {
		return nil, fmt.Errorf("user %s is a service account: service accounts sign in with a password alone", u.Name)
	}
	m, _, err := s.st.AddMethod(ctx, u.Name, kind, addr)
	if err != nil {
		return nil, err
	}
	if m.Verified {
		return m, fmt.Errorf("user %s: %s %s (method %d): %w", u.Name, kind, notify.Mask(kind, addr), m.ID, ErrAlreadyVerified)
	}
	code, err := RandomDigits(6)
	if err != nil {
		return nil, err
	}
	expires := s.now().Add(s.policy.ConfirmLifetime)
	if err := s.st.SetMethodCode(ctx, m.ID, s.codeHash(m.ID, code), expires); err != nil {
		return nil, err
	}
	msg := notify.Confirmation(kind, addr, notify.CodeData{Service: s.service, User: u.Name, Code: code,
		Minutes: int(s.policy.ConfirmLifetime / time.Minute)})
	if err := ch.Send(ctx, msg); err != nil {
		return m, fmt.Errorf("user %s: method %d added, but the confirmation code was not delivered (add it again to retry): %w", u.Name, m.ID, err)
	}
	s.log.Info("delivery method added, confirmation code sent", "user", u.Name, "method", m.ID, "kind", string(kind), "to", notify.Mask(kind, addr))
	m.CodeExpires = time.Unix(expires.Unix(), 0)
	return m, nil
}

func kindWord(k store.MethodKind) string {
	if k == store.MethodSMS {
		return "text messages"
	}
	return "e-mail"
}

// Confirmed is what Confirm did.
type Confirmed struct {
	Method  *store.Method
	TwoStep store.TwoStep // the account's state now
	// AlertErr is why the "method added" alert did not go out, if it
	// did not (the method is confirmed all the same).
	AlertErr error
}

// Confirm verifies the pending method of user that code was sent to,
// then settles the account's two-step state and alerts the owner.
func (s *Service) Confirm(ctx context.Context, user, code string) (*Confirmed, error) {
	u, err := s.st.User(ctx, user)
	if err != nil {
		return nil, err
	}
	ms, err := s.st.Methods(ctx, u.ID)
	if err != nil {
		return nil, err
	}
	now := s.now()
	var found *store.Method
	for i := range ms {
		m := &ms[i]
		if m.Verified || m.CodeHash == "" || !now.Before(m.CodeExpires) || m.CodeFailures >= MaxConfirmFailures {
			continue
		}
		// Every candidate is compared, in constant time.
		if hmac.Equal([]byte(s.codeHash(m.ID, code)), []byte(m.CodeHash)) && found == nil {
			found = m
		}
	}
	if found == nil {
		if err := s.st.MethodCodeFailed(ctx, u.ID); err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("user %s: %w", u.Name, ErrBadCode)
	}
	if err := s.st.VerifyMethod(ctx, found.ID); err != nil {
		return nil, err
	}
	found.Verified = true
	state, err := s.Settle(ctx, u.Name)
	if err != nil {
		return nil, err
	}
	s.log.Info("delivery method verified", "user", u.Name, "method", found.ID, "kind", string(found.Kind),
		"to", notify.Mask(found.Kind, found.Address), "two_step", string(state))
	c := &Confirmed{Method: found, TwoStep: state}
	if s.alerts.Enabled(notify.EventMethodAdded) {
		_, c.AlertErr = s.alerts.Send(ctx, notify.Alert{Event: notify.EventMethodAdded, User: u.Name,
			Detail: capitalize(notify.Describe(found.Kind, found.Address))})
	}
	return c, nil
}

func capitalize(s string) string {
	if s == "" || s[0] < 'a' || s[0] > 'z' {
		return s
	}
	return string(s[0]-'a'+'A') + s[1:]
}

// Factors counts user's second factors: confirmed authenticators, and
// verified methods of kinds that may receive codes.
func (s *Service) Factors(ctx context.Context, u *store.User) (authenticators, methods int, err error) {
	as, err := s.st.Authenticators(ctx, u.ID, true)
	if err != nil {
		return 0, 0, err
	}
	ms, err := s.st.Methods(ctx, u.ID)
	if err != nil {
		return 0, 0, err
	}
	for _, m := range ms {
		if m.Verified && s.policy.Allows(m.Kind) {
			methods++
		}
	}
	return len(as), methods, nil
}

// Settle sets user's two-step state after a second factor was confirmed
// (a method here, or an authenticator by enroll.Confirm): active, or
// pending while policy requires a backup method and the account has only
// one factor. An account with no factor is left as it is. Call it right
// after each confirmation; it is not meant to demote accounts that were
// active before the policy was turned on.
func (s *Service) Settle(ctx context.Context, user string) (store.TwoStep, error) {
	u, err := s.st.User(ctx, user)
	if err != nil {
		return "", err
	}
	a, m, err := s.Factors(ctx, u)
	if err != nil {
		return "", err
	}
	want := store.TwoStepActive
	switch {
	case a+m == 0:
		return u.TwoStep, nil
	case s.policy.RequireBackup && a+m < 2:
		want = store.TwoStepPending
	}
	if u.TwoStep != want {
		if err := s.st.SetTwoStep(ctx, u.Name, want); err != nil {
			return "", err
		}
	}
	return want, nil
}

// List returns user's methods, oldest first.
func (s *Service) List(ctx context.Context, user string) ([]store.Method, error) {
	u, err := s.st.User(ctx, user)
	if err != nil {
		return nil, err
	}
	return s.st.Methods(ctx, u.ID)
}

// Remove deletes method id of user. The last second factor of an account
// with two-step on cannot be removed: that would lock its owner out.
func (s *Service) Remove(ctx context.Context, user string, id int64) error {
	u, err := s.st.User(ctx, user)
	if err != nil {
		return err
	}
	m, err := s.st.Method(ctx, id)
	if err != nil || m.UserID != u.ID {
		return fmt.Errorf("user %s has no method %d: %w", u.Name, id, store.ErrNotFound)
	}
	if m.Verified && u.TwoStep == store.TwoStepActive {
		a, n, err := s.Factors(ctx, u)
		if err != nil {
			return err
		}
		if a+n <= 1 && s.policy.Allows(m.Kind) {
			return fmt.Errorf("user %s: method %d: %w; add another first, or turn two-step off (user disable-2sv)", u.Name, id, ErrLastFactor)
		}
	}
	if err := s.st.RemoveMethod(ctx, u.ID, id); err != nil {
		return err
	}
	s.log.Info("delivery method removed", "user", u.Name, "method", id, "kind", string(m.Kind), "to", notify.Mask(m.Kind, m.Address))
	return nil
}

// SetPrimary makes method id the one user's sign-in codes go to.
func (s *Service) SetPrimary(ctx context.Context, user string, id int64) error {
	u, err := s.st.User(ctx, user)
	if err != nil {
		return err
	}
	return s.st.SetPrimaryMethod(ctx, u.ID, id)
}

// Primary returns the method user's sign-in codes go to: the verified
// primary one if its kind may receive codes and can be sent to, else the
// oldest verified one that can. It returns nil when there is none.
func (s *Service) Primary(ctx context.Context, u *store.User) (*store.Method, error) {
	ms, err := s.st.Methods(ctx, u.ID)
	if err != nil {
		return nil, err
	}
	var first *store.Method
	for i := range ms {
		m := &ms[i]
		if !m.Verified || !s.policy.Allows(m.Kind) || s.channels[m.Kind] == nil {
			continue
		}
		if m.Primary {
			return m, nil
		}
		if first == nil {
			first = m
		}
	}
	return first, nil
}

// Channel returns the channel for kind, or nil.
func (s *Service) Channel(kind store.MethodKind) *notify.Channel { return s.channels[kind] }
