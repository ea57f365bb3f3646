// Package verifier makes the sign-in decision for every protocol: the
// password, the appended code, the replay guard, lockout, sessions and the
// audit trail. Front ends hand it an Attempt and translate its Decision
// back to their wire; it never knows which protocol asked.
package verifier

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/stepgate/stepgate/internal/credential"
	"github.com/stepgate/stepgate/internal/password"
	"github.com/stepgate/stepgate/internal/session"
	"github.com/stepgate/stepgate/internal/store"
)

// Policy says what happens to an account without two-step verification.
type Policy string

// Policies.
const (
	// PolicyDeny refuses accounts that have not enrolled (the default).
	PolicyDeny Policy = "deny"
	// PolicyAllow lets them in with their password alone, for roll-outs.
	PolicyAllow Policy = "allow"
)

// CodeSource is a second factor other than an authenticator app: a code
// stepgate sent by e-mail or SMS, or a recovery code.
type CodeSource interface {
	// Match reports whether code is currently valid for u. On a match it
	// returns use, which uses the code up (once the password is known to
	// be right) and reports false when someone else used it first.
	Match(ctx context.Context, u *store.User, code string) (use func() bool, ok bool)
}

// CodeSender is the "send me a code" step (DESIGN.md step 8): a sign-in
// with the right password but no valid code makes it send a fresh code.
type CodeSender interface {
	// CanSend reports whether u has somewhere to receive a code.
	CanSend(ctx context.Context, u *store.User) bool
	// Send sends a fresh code to u for a sign-in from remote, subject to
	// its throttles, and returns the text to show the person; ok is false
	// when nothing was sent.
	Send(ctx context.Context, u *store.User, remote string) (message string, ok bool)
}

// LockoutNotifier is told when a known user's failures lock the user out
// (a security alert to the owner). Address lockouts are not its business.
type LockoutNotifier interface {
	UserLockedOut(ctx context.Context, user string, until time.Time)
}

// Observer is told of every decision and lockout (metrics).
type Observer interface {
	Decided(a *Attempt, d *Decision)
	LockedOut(scope string)
}

// Config configures a Verifier.
type Config struct {
	Store    *store.Store
	Sessions *session.Store
	Rule     credential.Rule // the split rule; DefaultRule when zero
	TOTP     TOTP            // DefaultTOTP when zero
	Policy   Policy          // PolicyDeny when empty
	// Codes are further code sources checked after the authenticators.
	Codes []CodeSource
	// Sender, when set, sends codes on password-only sign-ins.
	Sender CodeSender
	// Audit receives one event per decision; nil discards them.
	Audit    *slog.Logger
	Observer Observer
	// Lockouts, when set, is told of user lockouts.
	Lockouts LockoutNotifier
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Hashes bounds local password hashes; nil shares a default one.
	Hashes *password.Limiter
}

// Verifier decides sign-ins. It is safe for concurrent use.
type Verifier struct {
	st       *store.Store
	sessions *session.Store
	rule     credential.Rule
	totp     TOTP
	policy   Policy
	codes    []CodeSource
	sender   CodeSender
	audit    *slog.Logger
	observer Observer
	lockouts LockoutNotifier
	now      func() time.Time
	accounts *accounts
	flights  flights
	decoy    *account
	hashes   *password.Limiter
}

// New returns a Verifier.
func New(cfg Config) (*Verifier, error) {
	if cfg.Store == nil || cfg.Sessions == nil {
		return nil, errors.New("verifier: a store and a session store are required")
	}
	if cfg.Rule == (credential.Rule{}) {
		cfg.Rule = credential.DefaultRule
	}
	if err := cfg.Rule.Validate(); err != nil {
		return nil, fmt.Errorf("verifier: %w", err)
	}
	if cfg.TOTP == (TOTP{}) {
		cfg.TOTP = DefaultTOTP
	}
	cfg.TOTP.Digits = cfg.Rule.Digits
	if cfg.TOTP.Period < time.Second || cfg.TOTP.Skew < 0 || cfg.TOTP.Skew > 10 {
		return nil, fmt.Errorf("verifier: TOTP period must be at least 1s and skew 0 to 10 steps")
	}
	switch cfg.Policy {
	case "":
		cfg.Policy = PolicyDeny
	case PolicyDeny, PolicyAllow:
	default:
		return nil, fmt.Errorf("verifier: policy %q: want deny or allow", cfg.Policy)
	}
	if cfg.Audit == nil {
		cfg.Audit = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	decoy, err := newDecoy()
	if err != nil {
		return nil, err
	}
	return &Verifier{
		st: cfg.Store, sessions: cfg.Sessions, rule: cfg.Rule, totp: cfg.TOTP, policy: cfg.Policy,
		codes: cfg.Codes, sender: cfg.Sender, audit: cfg.Audit, observer: cfg.Observer, lockouts: cfg.Lockouts, now: cfg.Now,
		accounts: newAccounts(cfg.Store), decoy: decoy, hashes: cfg.Hashes,
	}, nil
}

// newDecoy makes the account that unknown users are checked against, with
// a random password under the default hash and a random TOTP secret, so
// that an unknown name costs the same work as a known one.
func newDecoy() (*account, error) {
	raw := make([]byte, 20)
	if _, err := rand.Read(raw); err != nil {
		return nil, err
	}
	secret := base32.StdEncoding.EncodeToString(raw)
	hash, err := password.Hash(secret)
	if err != nil {
		return nil, err
	}
	return &account{
		user:  &store.User{Name: "", PasswordHash: hash, TwoStep: store.TwoStepActive},
		auths: []authenticator{{id: -1, secret: secret}},
	}, nil
}

// TOTP returns the code parameters in use.
func (v *Verifier) TOTP() TOTP { return v.totp }

// Rule returns the split rule in use.
func (v *Verifier) Rule() credential.Rule { return v.rule }

// Sessions returns the session store.
func (v *Verifier) Sessions() *session.Store { return v.sessions }

// handle adapts a session to SessionHandle.
type handle struct{ s *session.Session }

func (h handle) SessionID() string        { return h.s.ID }
func (h handle) Revoked() <-chan struct{} { return h.s.Revoked() }

// Verify decides one attempt and emits its audit event.
func (v *Verifier) Verify(ctx context.Context, a Attempt) Decision {
	start := v.now()
	d := v.decide(ctx, &a)
	d.Elapsed = time.Since(start)
	if d.Result == "" {
		d.Result = Deny
	}
	attrs := []slog.Attr{
		slog.String("protocol", a.Protocol),
		slog.String("user", a.User),
		slog.String("remote", a.Remote),
		slog.Bool("tls", a.TLS),
		slog.String("result", string(d.Result)),
		slog.String("reason", string(d.Reason)),
	}
	if d.Session != nil {
		attrs = append(attrs, slog.String("session", d.Session.SessionID()))
	}
	attrs = append(attrs, slog.Float64("ms", float64(d.Elapsed.Microseconds())/1000))
	v.audit.LogAttrs(ctx, slog.LevelInfo, "decision", attrs...)
	if v.observer != nil {
		v.observer.Decided(&a, &d)
	}
	return d
}

func deny(r Reason) Decision { return Decision{Result: Deny, Reason: r} }

func (v *Verifier) decide(ctx context.Context, a *Attempt) Decision {
	// 1. An empty password is never a sign-in (RFC 4513 5.1.2).
	if a.Secret == "" || a.User == "" {
		return deny(ReasonEmpty)
	}
	acct, err := v.accounts.get(ctx, a.User)
	if err != nil {
		v.audit.Error("reading account", "user", a.User, "err", err)
		return deny(ReasonError)
	}
	key := v.sessions.KeyFor(a.User, a.Secret)

	// 2. A live session for this exact string: the second factor is proven.
	if d, ok := v.sessionHit(ctx, a, acct, key); ok {
		return d
	}
	unlock := v.flights.lock(key)
	defer unlock()
	// Another attempt with the same string may have opened it meanwhile.
	if d, ok := v.sessionHit(ctx, a, acct, key); ok {
		return d
	}

	// 3. Lockout gate: fail fast, and send nothing upstream.
	userKey, addrKey := session.UserKey(a.User), session.AddrKey(a.Remote)
	if _, locked := v.sessions.Locked(userKey); locked {
		return deny(ReasonLocked)
	}
	if a.Remote != "" {
		if _, locked := v.sessions.Locked(addrKey); locked {
			return deny(ReasonLocked)
		}
	}

	d := v.check(ctx, a, acct, key)
	switch {
	case d.Allowed():
		v.sessions.Reset(userKey)
		if a.Remote != "" {
			v.sessions.Reset(addrKey)
		}
	case d.Reason == ReasonUnavailable || d.Reason == ReasonError || d.Reason == ReasonBusy:
		// Not the client's fault: no failure counted.
	case d.Reason == ReasonCodeSent:
		// The password was right and a code is on its way: not a guess.
		// Counted, it would lock the owner out just as the code arrives
		// (a mail client retrying in the background does the rest); the
		// sender's own throttles bound the sends.
	default:
		if until, now := v.fail(userKey, "user"); now && v.lockouts != nil && acct != nil {
			v.lockouts.UserLockedOut(ctx, acct.user.Name, until)
		}
		if a.Remote != "" {
			v.fail(addrKey, "addr")
		}
	}
	return d
}

// fail counts a failure against key and reports whether it started a
// lockout, and until when.
func (v *Verifier) fail(key, scope string) (until time.Time, lockedNow bool) {
	until, lockedNow = v.sessions.Fail(key)
	if lockedNow {
		v.audit.Warn("lockout", "scope", scope, "key", key, "until", until.UTC().Format(time.RFC3339))
		if v.observer != nil {
			v.observer.LockedOut(scope)
		}
	}
	return until, lockedNow
}

// sessionHit implements step 2.
func (v *Verifier) sessionHit(ctx context.Context, a *Attempt, acct *account, key session.Key) (Decision, bool) {
	if acct == nil {
		return Decision{}, false
	}
	sess, ok := v.sessions.Lookup(a.User, key)
	if !ok {
		return Decision{}, false
	}
	u := acct.user
	if sess.Epoch != u.Epoch || u.Disabled || (u.Service && a.Protocol != "ldap") {
		// Made before the account's last security change: dead.
		v.sessions.RevokeBefore(u.Name, u.Epoch+1)
		return Decision{}, false
	}
	if a.Password != nil {
		pw := a.Secret[:min(sess.PasswordLen, len(a.Secret))]
		switch err := a.Password.CheckPassword(ctx, u.Name, pw); {
		case err == nil:
		case errors.Is(err, ErrUnavailable):
			return deny(ReasonUnavailable), true
		case errors.Is(err, ErrBadPassword):
			// The upstream no longer takes this password: the session is dead.
			v.sessions.Drop(sess)
			return deny(ReasonBadPassword), true
		default:
			v.audit.Error("password check", "user", u.Name, "err", err)
			return deny(ReasonError), true
		}
	}
	return Decision{Result: Allow, Reason: ReasonSession, User: u.Name, Session: handle{sess}}, true
}

// checkPassword checks pw with the attempt's backend, or the local hash.
func (v *Verifier) checkPassword(ctx context.Context, a *Attempt, acct *account, pw string) Reason {
	var err error
	if a.Password != nil && acct != v.decoy {
		err = a.Password.CheckPassword(ctx, acct.user.Name, pw)
	} else {
		err = v.checkLocal(ctx, acct.user.PasswordHash, pw)
	}
	switch {
	case err == nil:
		return ""
	case errors.Is(err, ErrBadPassword):
		return ReasonBadPassword
	case errors.Is(err, ErrUnavailable):
		return ReasonUnavailable
	case errors.Is(err, ErrBusy):
		return ReasonBusy
	default:
		v.audit.Error("password check", "user", acct.user.Name, "err", err)
		return ReasonError
	}
}

// check runs steps 4 to 9 for an attempt that has no session.
func (v *Verifier) check(ctx context.Context, a *Attempt, acct *account, key session.Key) Decision {
	// 4.-5. Accounts that cannot sign in run the same work as those that
	// can, against the decoy, and fail with the same answer.
	forced := Reason("")
	switch {
	case acct == nil && a.Password != nil && v.policy == PolicyAllow:
		// Known upstream but not to stepgate: not enrolled.
		return v.passwordOnly(ctx, a, &account{user: &store.User{Name: a.User}}, key)
	case acct == nil:
		forced = ReasonUnknownUser
	case acct.user.Disabled:
		forced = ReasonDisabled
	case acct.user.Service && a.Protocol != "ldap":
		forced = ReasonServiceOnly
	case acct.user.Service:
		return v.passwordOnly(ctx, a, acct, key)
	case acct.user.TwoStep != store.TwoStepActive:
		// Two-step is on when the account says so, authenticator or not:
		// an account whose second factor is a phone or an e-mail address
		// that codes are sent to goes on to the code check, and an active
		// account must never fall back to its password alone.
		if v.policy == PolicyAllow {
			return v.passwordOnly(ctx, a, acct, key)
		}
		forced = ReasonNotEnrolled
	}
	if forced != "" {
		acct = v.decoy
	}

	// 6. Split.
	parts, err := credential.Split(a.Secret, v.rule)
	if err != nil {
		return deny(ReasonEmpty)
	}

	// 7. The code first: it is local and cheap, so a wrong code never
	// reaches an upstream directory or mail server.
	if parts.HasCode {
		now := v.now()
		var fresh, replayed bool
		var auth *authenticator
		var step int64
		acct.mu.Lock()
		for i := range acct.auths {
			au := &acct.auths[i]
			s, ok, err := v.totp.MatchStep(au.secret, parts.Code, now)
			if err != nil {
				acct.mu.Unlock()
				v.audit.Error("authenticator secret", "user", acct.user.Name, "err", err)
				return deny(ReasonError)
			}
			if !ok {
				continue
			}
			if s <= au.lastStep {
				replayed = true
				continue
			}
			if !fresh {
				fresh, auth, step = true, au, s
			}
		}
		acct.mu.Unlock()
		var use func() bool
		if !fresh && forced == "" {
			for _, src := range v.codes {
				if u, ok := src.Match(ctx, acct.user, parts.Code); ok {
					use = u
					break
				}
			}
		}
		switch {
		case forced != "":
			if fresh || use != nil { // cannot happen with the decoy's random secret
				return deny(forced)
			}
		case fresh || use != nil:
			if r := v.checkPassword(ctx, a, acct, parts.Password); r != "" {
				// A wrong password does not burn the code.
				return deny(r)
			}
			if fresh {
				if r := v.consume(ctx, acct, auth, step); r != "" {
					return deny(r)
				}
			} else if !use() {
				return deny(ReasonReplayed)
			}
			return v.open(a, acct.user, key, len(parts.Password), ReasonCode)
		case replayed:
			return deny(ReasonReplayed)
		}
	}

	// 8. No valid code: when the whole string is the right password and the
	// user can receive a code, send one.
	if v.sender != nil && (forced != "" || v.sender.CanSend(ctx, acct.user)) {
		// An upstream backend is only asked when no code-shaped tail was
		// sent, so a wrong code still never reaches it.
		if a.Password == nil || !parts.HasCode || forced != "" {
			r := v.checkPassword(ctx, a, acct, a.Secret)
			if forced != "" && r != ReasonBusy { // busy says nothing of the account
				return deny(forced)
			}
			if r == ReasonUnavailable || r == ReasonError || r == ReasonBusy {
				return deny(r)
			}
			if r == "" {
				if msg, ok := v.sender.Send(ctx, acct.user, a.Remote); ok {
					return Decision{Result: Deny, Reason: ReasonCodeSent, Message: msg}
				}
			}
		}
	}
	if forced != "" {
		return deny(forced)
	}
	if parts.HasCode {
		return deny(ReasonBadCode)
	}
	return deny(ReasonNoCode)
}

// consume records the step durably; the in-memory guard moves first so
// that a concurrent attempt with another string sees it at once.
func (v *Verifier) consume(ctx context.Context, acct *account, auth *authenticator, step int64) Reason {
	acct.mu.Lock()
	if step <= auth.lastStep {
		acct.mu.Unlock()
		return ReasonReplayed
	}
	auth.lastStep = step
	acct.mu.Unlock()
	switch err := v.st.ConsumeStep(ctx, auth.id, step); {
	case err == nil:
		return ""
	case errors.Is(err, store.ErrStepUsed):
		return ReasonReplayed
	default:
		v.audit.Error("recording used code", "user", acct.user.Name, "err", err)
		return ReasonError
	}
}

// passwordOnly signs in with the whole string as the password: service
// accounts, and accounts without two-step under policy allow.
func (v *Verifier) passwordOnly(ctx context.Context, a *Attempt, acct *account, key session.Key) Decision {
	if r := v.checkPassword(ctx, a, acct, a.Secret); r != "" {
		return deny(r)
	}
	return v.open(a, acct.user, key, len(a.Secret), ReasonPasswordOnly)
}

// open is step 9: a session for (user, string).
func (v *Verifier) open(a *Attempt, u *store.User, key session.Key, pwLen int, r Reason) Decision {
	sess, err := v.sessions.Create(session.NewSession{
		User: u.Name, Key: key, Protocol: a.Protocol, Remote: a.Remote, Epoch: u.Epoch, PasswordLen: pwLen,
	})
	if err != nil {
		v.audit.Error("opening session", "user", u.Name, "err", err)
		return deny(ReasonError)
	}
	return Decision{Result: Allow, Reason: r, User: u.Name, Session: handle{sess}}
}
