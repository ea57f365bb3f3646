// Package sentcode is the "send me a code" half of two-step verification:
// a sign-in with the right password but no valid code, from an account
// with a verified delivery method, makes stepgate send a fresh code to
// that method and fail with a message saying so; the password with that
// code appended then signs in, once, within the code's lifetime. It
// implements verifier.CodeSender and verifier.CodeSource.
package sentcode

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/stepgate/stepgate/internal/credential"
	"github.com/stepgate/stepgate/internal/method"
	"github.com/stepgate/stepgate/internal/notify"
	"github.com/stepgate/stepgate/internal/session"
	"github.com/stepgate/stepgate/internal/store"
)

// Limits are the lifetime of a code and the send throttles.
type Limits struct {
	// Lifetime is how long a sent code works (10 min).
	Lifetime time.Duration
	// MinInterval is the least time between two sends to one account (60 s).
	MinInterval time.Duration
	// PerHour bounds the sends to one account in an hour (5).
	PerHour int
	// PerSourcePerHour bounds the sends caused from one address in an
	// hour, whatever the account (20).
	PerSourcePerHour int
}

// DefaultLimits are the defaults of Limits.
var DefaultLimits = Limits{Lifetime: 10 * time.Minute, MinInterval: time.Minute, PerHour: 5, PerSourcePerHour: 20}

// Service sends codes and recognises them.
type Service struct {
	methods   *method.Service
	sessions  *session.Store
	templates *notify.Templates
	alerts    *notify.Alerter
	rule      credential.Rule
	limits    Limits
	key       []byte
	service   string
	now       func() time.Time
	log       *slog.Logger
}

// Options configure New.
type Options struct {
	// Rule is the split rule: codes have Rule.Digits digits, and the
	// message names the separator.
	Rule    credential.Rule
	Limits  Limits
	Service string
	Log     *slog.Logger
	Now     func() time.Time
}

// New returns a Service. key keys the hashes of sent codes; derive it
// from the sealing key: store.Sealer().Derive("sent code").
func New(methods *method.Service, sessions *session.Store, templates *notify.Templates, alerts *notify.Alerter, key []byte, o Options) (*Service, error) {
	if methods == nil || sessions == nil || templates == nil {
		return nil, errors.New("sentcode: methods, sessions and templates are required")
	}
	if len(key) < 32 {
		return nil, errors.New("sentcode: key shorter than 32 bytes")
	}
	if o.Rule == (credential.Rule{}) {
		o.Rule = credential.DefaultRule
	}
	if err := o.Rule.Validate(); err != nil {
		return nil, fmt.Errorf("sentcode: %w", err)
	}
	l := o.Limits
	if l.Lifetime <= 0 {
		l.Lifetime = DefaultLimits.Lifetime
	}
	if l.MinInterval <= 0 {
		l.MinInterval = DefaultLimits.MinInterval
	}
	if l.PerHour <= 0 {
		l.PerHour = DefaultLimits.PerHour
	}
	if l.PerSourcePerHour <= 0 {
		l.PerSourcePerHour = DefaultLimits.PerSourcePerHour
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
	return &Service{methods: methods, sessions: sessions, templates: templates, alerts: alerts, rule: o.Rule, limits: l,
		key: append([]byte(nil), key...), service: o.Service, now: o.Now, log: o.Log}, nil
}

func (s *Service) hash(user, code string) string {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte(strings.ToLower(user)))
	m.Write([]byte{0})
	m.Write([]byte(code))
	return hex.EncodeToString(m.Sum(nil))
}

// CanSend reports whether u has a verified method that codes can go to.
func (s *Service) CanSend(ctx context.Context, u *store.User) bool {
	m, err := s.methods.Primary(ctx, u)
	if err != nil {
		s.log.Error("reading delivery methods", "user", u.Name, "err", err)
		return false
	}
	return m != nil
}

// Send sends a fresh code to u's primary method for a sign-in from remote
// and returns the text for the person at the client. Nothing is sent
// (ok false) when a throttle is spent or delivery fails.
func (s *Service) Send(ctx context.Context, u *store.User, remote string) (string, bool) {
	m, err := s.methods.Primary(ctx, u)
	if err != nil || m == nil {
		return "", false
	}
	ch := s.methods.Channel(m.Kind)
	to := notify.Mask(m.Kind, m.Address)
	user := "user:" + strings.ToLower(u.Name)
	if !s.sessions.TakeSend(
		session.Budget{Key: user, Max: 1, Window: s.limits.MinInterval},
		session.Budget{Key: user, Max: s.limits.PerHour, Window: time.Hour},
		session.Budget{Key: "addr:" + remote, Max: s.limits.PerSourcePerHour, Window: time.Hour},
	) {
		s.log.Info("security code not sent: throttled", "user", u.Name, "remote", remote)
		return "", false
	}
	now := s.now()
	var code, h string
	for i := 0; ; i++ {
		if code, err = method.RandomDigits(s.rule.Digits); err != nil {
			s.log.Error("security code not sent", "user", u.Name, "err", err)
			return "", false
		}
		h = s.hash(u.Name, code)
		err = s.sessions.PutSentCode(session.SentCode{Hash: h, User: u.Name, Epoch: u.Epoch, Method: m.ID,
			Created: now, Expires: now.Add(s.limits.Lifetime)})
		if err == nil {
			break
		}
		// The same code is live already (one in a million): draw again.
		if !errors.Is(err, session.ErrCodeExists) || i == 5 {
			s.log.Error("security code not sent", "user", u.Name, "err", err)
			return "", false
		}
	}
	msg, err := s.templates.Code(m.Kind, m.Address, notify.CodeData{Service: s.service, User: u.Name, Code: code,
		Minutes: int((s.limits.Lifetime + time.Minute - 1) / time.Minute), Remote: orUnknown(remote),
		Time: now.UTC().Format(time.RFC1123), Separator: s.rule.Separator})
	if err == nil {
		// The client's connection may give up; the delivery does not.
		err = ch.Send(context.WithoutCancel(ctx), msg)
	}
	if err != nil {
		s.sessions.UseSentCode(h)
		s.log.Error("security code not sent", "user", u.Name, "method", m.ID, "to", to, "err", err)
		return "", false
	}
	s.log.Info("security code sent", "user", u.Name, "method", m.ID, "kind", string(m.Kind), "to", to, "remote", remote)
	if s.alerts.Enabled(notify.EventCodeSent) {
		skip := ""
		if m.Kind == store.MethodEmail {
			skip = m.Address // the code's own message already says it all
		}
		s.alerts.Post(notify.Alert{Event: notify.EventCodeSent, User: u.Name, Remote: remote, Detail: notify.Describe(m.Kind, m.Address),
			Skip: skip, Time: now})
	}
	return Message(to, s.rule.Separator), true
}

// Message is the text shown at the client after a send.
func Message(maskedTo, separator string) string {
	if separator != "" {
		return fmt.Sprintf("Security code sent to %s. Append it to your password after %q.", maskedTo, separator)
	}
	return fmt.Sprintf("Security code sent to %s. Append it to your password.", maskedTo)
}

func orUnknown(s string) string {
	if s == "" {
		return "an unknown address"
	}
	return s
}

// Match reports whether code is a live code sent to u; use uses it up.
func (s *Service) Match(ctx context.Context, u *store.User, code string) (func() (bool, error), bool) {
	if len(code) != s.rule.Digits || credential.IsRecoveryCode(code) {
		return nil, false
	}
	h := s.hash(u.Name, code)
	c, ok := s.sessions.SentCodeFor(u.Name, h)
	if !ok || c.Epoch != u.Epoch {
		// A password change since the send makes the code worthless.
		return nil, false
	}
	return func() (bool, error) {
		if !s.sessions.UseSentCode(h) {
			return false, nil
		}
		s.log.Info("security code used", "user", u.Name, "method", c.Method)
		return true, nil
	}, true
}
