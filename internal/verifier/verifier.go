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
	"github.com/stepgate/stepgate/internal/username"
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
	// be right) and reports false when someone else used it first, or an
	// error when the use could not be recorded (the code is then unused).
	Match(ctx context.Context, u *store.User, code string) (use func() (bool, error), ok bool)
}

// CodeSender is the "send me a code" step (step 8 of the decision, ARCHITECTURE.md): a sign-in
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
	Store    Store
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
	// Applications are the remotes that sign in many users from one
	// address (Apache, webmail): their attempts count per user only,
	// since their address's budget would be spent by some users' typos
	// and then refuse everyone else.
	Applications Networks
	// AppPasswordKey keys the hashes of app passwords (AppPasswordHash);
	// without it app passwords sign in nowhere.
	AppPasswordKey []byte
	// Directory, when set, is asked for the groups of an account that
	// has not enrolled when its attempt brought no directory of its own
	// (an IMAP login in front of a mail server that uses the directory).
	Directory Directory
	// RequireGroups are group DNs, in the form the Directory reports
	// them, whose members must use two-step: not enrolled is refused,
	// whatever Policy and ExemptNetworks say.
	RequireGroups []string
	// ExemptNetworks are where an account that has not enrolled may sign
	// in with its password alone (a printer VLAN) when Policy is deny,
	// unless it is in RequireGroups. Enrolled accounts always need a code.
	ExemptNetworks Networks
}

// Verifier decides sign-ins. It is safe for concurrent use.
type Verifier struct {
	st       Store
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
	pacer    pacer
	hashes   *password.Limiter
	apps     Networks
	appKey   []byte

	directory     Directory
	requireGroups map[string]struct{}
	exempt        Networks
}

// New returns a Verifier.
func New(cfg Config) (*Verifier, error) {
	if st, ok := cfg.Store.(*store.Store); ok && st == nil {
		cfg.Store = nil // a nil *store.Store is no store either
	}
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
	decoy, hashTime, err := newDecoy()
	if err != nil {
		return nil, err
	}
	v := &Verifier{
		st: cfg.Store, sessions: cfg.Sessions, rule: cfg.Rule, totp: cfg.TOTP, policy: cfg.Policy,
		codes: cfg.Codes, sender: cfg.Sender, audit: cfg.Audit, observer: cfg.Observer, lockouts: cfg.Lockouts, now: cfg.Now,
		accounts: newAccounts(cfg.Store), decoy: decoy, hashes: cfg.Hashes,
		apps: cfg.Applications, appKey: cfg.AppPasswordKey, directory: cfg.Directory, exempt: cfg.ExemptNetworks,
		requireGroups: map[string]struct{}{},
	}
	for _, g := range cfg.RequireGroups {
		v.requireGroups[g] = struct{}{}
	}
	v.pacer.localSeed.Store(int64(hashTime))
	return v, nil
}

// newDecoy makes the account that names which cannot sign in (unknown,
// disabled, not enrolled, rejected by the name profile) have their code
// checked against: one authenticator with a random secret, which matches
// no code. It also times one hash under the default algorithm, the
// pacer's first idea of what a local password check costs.
func newDecoy() (*account, time.Duration, error) {
	raw := make([]byte, 20)
	if _, err := rand.Read(raw); err != nil {
		return nil, 0, err
	}
	secret := base32.StdEncoding.EncodeToString(raw)
	start := time.Now()
	if _, err := password.Hash(secret); err != nil {
		return nil, 0, err
	}
	took := time.Since(start)
	return &account{
		user:  &store.User{Name: "", TwoStep: store.TwoStepActive},
		auths: []authenticator{{id: -1, secret: secret}},
	}, took, nil
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
	start := time.Now()
	sent := a.User
	// The directory says whom the name stands for before anything else,
	// inside the paced time: an absent name and a present one must not
	// differ by how long the lookup took.
	var look lookup
	if a.Directory != nil && a.User != "" && a.Secret != "" {
		look.asked = true
		look.entry, look.err = a.Directory.Lookup(ctx, a.User)
		if look.entry != nil {
			a.User = look.entry.Name
			if a.Resolved != nil {
				a.Resolved(look.entry)
			}
		}
	}
	name, err := username.Canonical(a.User)
	valid := err == nil
	if valid {
		a.User = name
	}
	d := v.decide(ctx, &a, valid, look)
	if d.Result == "" {
		d.Result = Deny
	}
	if d.Reason == ReasonBadPassword {
		// The one failure that did its password check: what every other
		// failure must look like, whole decision included.
		v.pacer.observe(a.Password != nil, true, time.Since(start))
	}
	v.pace(ctx, start, &a, d)
	d.Elapsed = time.Since(start)
	v.record(ctx, &a, &d, sent)
	return d
}

func deny(r Reason) Decision { return Decision{Result: Deny, Reason: r} }

// lookup is what the attempt's directory said about its name.
type lookup struct {
	asked bool
	entry *DirectoryEntry // nil: no such entry
	err   error
}

// decide runs the decision for a.User, which is the account's canonical
// name when valid, and the name as sent when the profile rejected it.
func (v *Verifier) decide(ctx context.Context, a *Attempt, valid bool, look lookup) Decision {
	// 1. An empty password is never a sign-in (RFC 4513 5.1.2).
	if a.Secret == "" || a.User == "" {
		return deny(ReasonEmpty)
	}
	if look.err != nil {
		v.audit.Warn("directory lookup failed", "user", a.User, "err", look.err)
		if errors.Is(look.err, ErrUnavailable) {
			return deny(ReasonUnavailable)
		}
		return deny(ReasonError)
	}
	var acct *account
	if valid && (!look.asked || look.entry != nil) {
		// Absent from the directory that was asked: unknown, whatever
		// row the store may still hold under the name.
		var err error
		if look.entry != nil {
			acct, err = v.directoryAccount(ctx, a.User, look.entry)
		} else {
			acct, err = v.accounts.get(ctx, a.User)
		}
		switch {
		case errors.Is(err, errNameTaken):
			v.audit.Warn("directory entry refused: delete the old row (stepgate user delete)", "user", a.User, "err", err)
			valid, acct = false, nil
			look.err = err
		case err != nil:
			// The store is down or unreachable (a database server
			// restarting): the client's string may well be right, so
			// never answer "wrong"; no failure is counted.
			v.audit.Error("reading account", "user", a.User, "err", err)
			return deny(ReasonUnavailable)
		}
	}
	key := v.sessions.KeyFor(a.User, a.Secret)
	if acct != nil && a.Password == nil {
		v.pacer.learn(acct.user.PasswordHash)
	}

	// 2. A live session for this exact string: the second factor is proven.
	if d, ok := v.sessionHit(ctx, a, acct, key, false); ok {
		return d
	}
	unlock := v.flights.lock(key)
	defer unlock()
	// Another attempt with the same string may have opened it meanwhile,
	// here or on another instance (or before a crash): this time the
	// store is asked too.
	if d, ok := v.sessionHit(ctx, a, acct, key, true); ok {
		return d
	}

	// 3. Admission: the attempt takes its slot in the user's and the
	// address's budget before any password or code is checked, and holds
	// it while it is evaluated; a locked key, or a budget filled by
	// failures and attempts in flight, fails fast and sends nothing
	// upstream. An application's address has no budget of its own.
	userKey, addrKey := session.UserKey(a.User), ""
	if a.Remote != "" && !v.apps.Contains(a.Remote) {
		addrKey = session.AddrKey(a.Remote)
	}
	if v.sessions.FailedRecently(userKey, key) {
		// The same string failed a moment ago: a device retrying its
		// stale password. The answer is known; it costs no evaluation and
		// no second unit of the budget. A lockout still says so.
		if d := v.locked(userKey, addrKey); d.Message != inFlightMessage {
			return d
		}
		return deny(ReasonRepeated)
	}
	adm, ok := v.sessions.Admit(userKey, addrKey)
	if !ok {
		return v.locked(userKey, addrKey)
	}
	defer adm.Done(session.Neutral, key) // a panic must not keep the slot

	d := v.check(ctx, a, acct, key, valid, look)
	outcome := session.Failed
	switch {
	case final(d.Reason):
		outcome = session.Final
	case d.Allowed():
		outcome = session.Succeeded
	case d.Reason == ReasonUnavailable || d.Reason == ReasonError || d.Reason == ReasonBusy:
		// Not the client's fault: no failure counted.
		outcome = session.Neutral
	case d.Reason == ReasonCodeSent:
		// The password was right and a code is on its way: not a guess.
		// Counted, it would lock the owner out just as the code arrives
		// (a mail client retrying in the background does the rest); the
		// sender's own throttles bound the sends.
		outcome = session.Neutral
	}
	for k, until := range adm.Done(outcome, key) {
		scope := "addr"
		if k == userKey {
			scope = "user"
		}
		v.audit.Warn("lockout", "scope", scope, "key", k, "until", until.UTC().Format(time.RFC3339))
		if v.observer != nil {
			v.observer.LockedOut(scope)
		}
		if scope == "user" && v.lockouts != nil && acct != nil {
			v.lockouts.UserLockedOut(ctx, acct.user.Name, until)
		}
	}
	return d
}

const inFlightMessage = "Too many sign-in attempts at once; try again in a few minutes."

// final reports whether a failure is one that the same string cannot get
// past while the failure is remembered: a wrong password or code, a used
// code, a name that is no account. Not final: no code (a code may be sent
// later), a disabled or not enrolled account (an administrator may change
// it), a service account on the wrong protocol.
func final(r Reason) bool {
	switch r {
	case ReasonBadPassword, ReasonBadCode, ReasonReplayed, ReasonUnknownUser, ReasonBadName, ReasonIdentity, ReasonNoLocalPassword:
		return true
	}
	return false
}

// locked is the answer to an attempt that admission turned away: the one
// failure that may say what it is, with the time it ends. Counters exist
// for names that are no account too, so it reveals nothing about which
// accounts exist.
func (v *Verifier) locked(keys ...string) Decision {
	var until time.Time
	for _, k := range keys {
		if t, ok := v.sessions.Locked(k); ok && t.After(until) {
			until = t
		}
	}
	d := deny(ReasonLocked)
	if until.IsZero() {
		// Not locked yet: the budget is taken by attempts in flight.
		d.Message = inFlightMessage
	} else {
		d.Message = "Too many failed sign-ins; try again after " + until.UTC().Format("15:04") + " UTC."
	}
	return d
}

// sessionHit implements step 2. A session is only ever opened for the
// account the password backend said it authenticated, and is keyed by
// that account and the exact string, so a hit needs no identity check.
func (v *Verifier) sessionHit(ctx context.Context, a *Attempt, acct *account, key session.Key, stored bool) (Decision, bool) {
	if acct == nil {
		return Decision{}, false
	}
	var sess *session.Session
	var ok bool
	if stored {
		sess, ok = v.sessions.Load(ctx, a.User, key)
	} else {
		sess, ok = v.sessions.Lookup(a.User, key)
	}
	if !ok {
		return Decision{}, false
	}
	u := acct.user
	if sess.Epoch != u.Epoch || u.Disabled || (u.Service && !a.ServiceAccounts) {
		// Made before the account's last security change: dead, here
		// and in the store.
		v.sessions.RevokeBefore(u.Name, u.Epoch+1)
		v.sessions.Drop(sess)
		return Decision{}, false
	}
	if a.Password != nil {
		pw := v.sessionPassword(sess, a.Secret)
		switch r := v.checkPassword(ctx, a, acct, pw); r {
		case "":
		case ReasonBadPassword:
			// The upstream no longer takes this password: the session is dead.
			v.sessions.Drop(sess)
			return deny(ReasonBadPassword), true
		default:
			return deny(r), true
		}
	}
	return Decision{Result: Allow, Reason: ReasonSession, User: u.Name, Session: handle{sess}}, true
}

// sessionPassword is the password part of the string that hit sess. A
// session read from the store does not know its password's length (the
// store keeps nothing of the string but its keyed hash): the split rule
// that made it finds it again.
func (v *Verifier) sessionPassword(sess *session.Session, secret string) string {
	switch {
	case sess.PasswordLen > 0:
		return secret[:min(sess.PasswordLen, len(secret))]
	case sess.Whole:
		return secret
	}
	if parts, err := credential.Split(secret, v.rule); err == nil && parts.HasCode {
		return parts.Password
	}
	return secret
}

// checkPassword checks pw with the attempt's backend, or the local hash,
// and teaches the pacer how long a password check takes.
func (v *Verifier) checkPassword(ctx context.Context, a *Attempt, acct *account, pw string) Reason {
	start := time.Now()
	var err error
	if a.Password != nil {
		err = a.Password.CheckPassword(ctx, acct.user.Name, pw)
	} else {
		err = v.checkLocal(ctx, acct.user.PasswordHash, pw)
	}
	switch {
	case err == nil:
		v.pacer.observe(a.Password != nil, false, time.Since(start))
		return ""
	case errors.Is(err, ErrBadPassword):
		return ReasonBadPassword
	case errors.Is(err, ErrBusy):
		return ReasonBusy
	case errors.Is(err, ErrUnavailable):
		return ReasonUnavailable
	case errors.Is(err, ErrBusy):
		return ReasonBusy
	default:
		v.audit.Error("password check", "user", acct.user.Name, "err", err)
		return ReasonError
	}
}

// checkIdentity makes sure that the account the password backend
// authenticated is the one the decision was made for. A directory maps
// many forms of a name (escaped DN values, spaces, other case rules) to
// one entry; stepgate must never let "uid=alice\20" in as an unenrolled
// stranger when the directory took it for the enrolled alice.
func (v *Verifier) checkIdentity(ctx context.Context, a *Attempt, name string) Reason {
	id, ok := a.Password.(Identifier)
	if !ok {
		return ""
	}
	got, err := id.Identity(ctx)
	switch {
	case errors.Is(err, ErrUnavailable):
		return ReasonUnavailable
	case err != nil:
		v.audit.Warn("upstream identity unknown; refusing", "user", name, "err", err)
		return ReasonIdentity
	case len(got) == 0:
		v.audit.Warn("upstream identity unknown; refusing", "user", name)
		return ReasonIdentity
	}
	for _, g := range got {
		if c, err := username.Canonical(g); err != nil || c != name {
			v.audit.Warn("upstream authenticated another account; refusing", "user", name, "upstream_user", g)
			return ReasonIdentity
		}
	}
	return ""
}

// check runs steps 4 to 9 for an attempt that has no session.
func (v *Verifier) check(ctx context.Context, a *Attempt, acct *account, key session.Key, valid bool, look lookup) Decision {
	// 4.-5. Accounts that cannot sign in run the code check against the
	// decoy and fail with the same answer; the pacer makes them take as
	// long as a password check would.
	forced := Reason("")
	if acct != nil && !acct.user.Disabled && !acct.user.Service {
		// An app password is the whole string: it is checked before the
		// split, against the account's keyed hashes.
		if d, ok := v.appPassword(ctx, a, acct); ok {
			return d
		}
	}
	switch {
	case errors.Is(look.err, errNameTaken):
		forced = ReasonIdentity
	case !valid:
		forced = ReasonBadName
	case look.asked && look.entry == nil:
		// Absent from the directory: no one to sign in.
		forced = ReasonUnknownUser
	case acct == nil && a.Password != nil:
		// Known upstream (the directory's entry, or a mail server that
		// checks the login) but without a row: not enrolled. The
		// identity check after the upstream check makes sure that the
		// upstream did not take the name for an enrolled account.
		if a.SetUp {
			// The portal: the person sets two-step up, and the portal
			// makes the row (account.Service.Row).
			return v.setUp(ctx, a, &account{user: &store.User{Name: a.User}})
		}
		d, r := v.notEnrolled(ctx, a, &account{user: &store.User{Name: a.User}}, key, look.entry)
		if r == "" {
			return d
		}
		forced = r
	case acct == nil:
		forced = ReasonUnknownUser
	case acct.user.Disabled:
		forced = ReasonDisabled
	case acct.user.Service && !a.ServiceAccounts:
		forced = ReasonServiceOnly
	case acct.user.Service:
		return v.passwordOnly(ctx, a, acct, key, ReasonPasswordOnly)
	case a.Password == nil && acct.user.Source != "" && acct.user.Source != store.SourceLocal:
		// A directory's or a mail server's person, at a front end that
		// checks passwords locally: there is no hash to check.
		forced = ReasonNoLocalPassword
	case acct.user.TwoStep != store.TwoStepActive:
		// Two-step is on when the account says so, authenticator or not:
		// an account whose second factor is a phone or an e-mail address
		// that codes are sent to goes on to the code check, and an active
		// account must never fall back to its password alone.
		if a.SetUp {
			// The portal, where the person sets two-step up: whatever the
			// policy, the password alone lets them in to do it, with no
			// session that could sign in elsewhere.
			return v.setUp(ctx, a, acct)
		}
		d, r := v.notEnrolled(ctx, a, acct, key, look.entry)
		if r == "" {
			return d
		}
		forced = r
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
		var use func() (bool, error)
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
			return deny(forced) // the decoy's random secret matches nothing
		case fresh || use != nil:
			if r := v.checkPassword(ctx, a, acct, parts.Password); r != "" {
				// A wrong password does not burn the code.
				return deny(r)
			}
			if r := v.checkIdentity(ctx, a, acct.user.Name); r != "" {
				return deny(r)
			}
			if fresh {
				sess, err := v.sessions.Prepare(v.newSession(a, acct.user, key, len(parts.Password), false))
				if err != nil {
					v.audit.Error("opening session", "user", acct.user.Name, "err", err)
					return deny(ReasonError)
				}
				if r := v.consume(ctx, acct, auth, step, sess); r != "" {
					if r == ReasonReplayed {
						// The same string may have just been accepted on
						// another instance: its session is in the store.
						if d, ok := v.sessionHit(ctx, a, acct, key, true); ok {
							return d
						}
					}
					return deny(r)
				}
				sess = v.sessions.Add(sess)
				return Decision{Result: Allow, Reason: ReasonCode, User: acct.user.Name, Session: handle{sess}}
			} else if used, err := use(); err != nil {
				return deny(ReasonUnavailable) // not recorded, so not used
			} else if !used {
				return deny(ReasonReplayed)
			}
			return v.open(ctx, a, acct.user, key, len(parts.Password), false, ReasonCode)
		case replayed:
			return deny(ReasonReplayed)
		}
	}
	if forced != "" {
		// A real account that can receive codes would hash its password
		// here, and under load be answered busy; the decoy path takes a
		// hashing slot (and hashes nothing) so that it is answered busy
		// just as often.
		if v.sender != nil && a.Password == nil && !parts.HasCode && !v.hashSlotFree(ctx) {
			return deny(ReasonBusy)
		}
		return deny(forced)
	}

	// 8. No valid code: when the whole string is the right password and the
	// user can receive a code, send one. An upstream backend is only
	// asked when no code-shaped tail was sent, so a wrong code still never
	// reaches it.
	if v.sender != nil && (a.Password == nil || !parts.HasCode) && v.sender.CanSend(ctx, acct.user) {
		switch r := v.checkPassword(ctx, a, acct, a.Secret); r {
		case "":
			if r := v.checkIdentity(ctx, a, acct.user.Name); r != "" {
				return deny(r)
			}
			if msg, ok := v.sender.Send(ctx, acct.user, a.Remote); ok {
				return Decision{Result: Deny, Reason: ReasonCodeSent, Message: msg}
			}
		case ReasonUnavailable, ReasonError, ReasonBusy:
			return deny(r)
		}
	}
	if parts.HasCode {
		return deny(ReasonBadCode)
	}
	return deny(ReasonNoCode)
}

// consume records the step durably; the in-memory guard moves first so
// that a concurrent attempt with another string sees it at once.
func (v *Verifier) consume(ctx context.Context, acct *account, auth *authenticator, step int64, sess *session.Session) Reason {
	acct.mu.Lock()
	if step <= auth.lastStep {
		acct.mu.Unlock()
		return ReasonReplayed
	}
	prev := auth.lastStep
	auth.lastStep = step
	acct.mu.Unlock()
	var rec *store.SessionRecord
	if v.sessions.Durable() {
		rec = sess.Record()
	}
	switch err := v.st.ConsumeStepWithSession(ctx, auth.id, step, rec); {
	case err == nil:
		return ""
	case errors.Is(err, store.ErrStepUsed):
		return ReasonReplayed
	default:
		// Not on disk, so not used: a full disk must not burn the code.
		// Put the guard back unless another attempt moved it on since.
		acct.mu.Lock()
		if auth.lastStep == step {
			auth.lastStep = prev
		}
		acct.mu.Unlock()
		v.audit.Error("recording used code", "user", acct.user.Name, "err", err)
		return ReasonUnavailable
	}
}

// notEnrolled is step 5, the rules for an account without two-step, in
// the order in which they win: a member of a required group is refused;
// from an exempt network the password alone is enough; otherwise the
// policy says. It returns a decision, or the reason to fail with on the
// decoy's path.
func (v *Verifier) notEnrolled(ctx context.Context, a *Attempt, acct *account, key session.Key, ent *DirectoryEntry) (Decision, Reason) {
	member, err := v.memberOfRequired(ctx, a.User, ent)
	switch {
	case errors.Is(err, ErrUnavailable):
		return deny(ReasonUnavailable), ""
	case err != nil:
		v.audit.Error("reading groups", "user", a.User, "err", err)
		return deny(ReasonError), ""
	case member:
		return Decision{}, ReasonNotEnrolled
	case v.exempt.Contains(a.Remote):
		return v.passwordOnly(ctx, a, acct, key, ReasonExemptNetwork), ""
	case v.policy == PolicyAllow:
		return v.passwordOnly(ctx, a, acct, key, ReasonPasswordOnly), ""
	}
	return Decision{}, ReasonNotEnrolled
}

// passwordOnly signs in with the whole string as the password: service
// accounts, and accounts without two-step under policy allow or from an
// exempt network.
func (v *Verifier) passwordOnly(ctx context.Context, a *Attempt, acct *account, key session.Key, r Reason) Decision {
	if r := v.checkPassword(ctx, a, acct, a.Secret); r != "" {
		return deny(r)
	}
	if r := v.checkIdentity(ctx, a, acct.user.Name); r != "" {
		return deny(r)
	}
	if r == ReasonExemptNetwork {
		// No session: one would let the same string in from anywhere
		// (sessions are keyed by account and string, not by address).
		return Decision{Result: Allow, Reason: r, User: acct.user.Name}
	}
	return v.open(ctx, a, acct.user, key, len(a.Secret), true, r)
}

// setUp lets a person whose account has no two-step yet in with the
// password alone, to set it up, and opens no session.
func (v *Verifier) setUp(ctx context.Context, a *Attempt, acct *account) Decision {
	if r := v.checkPassword(ctx, a, acct, a.Secret); r != "" {
		return deny(r)
	}
	if r := v.checkIdentity(ctx, a, acct.user.Name); r != "" {
		return deny(r)
	}
	return Decision{Result: Allow, Reason: ReasonSetUp, User: acct.user.Name}
}

func (v *Verifier) newSession(a *Attempt, u *store.User, key session.Key, pwLen int, whole bool) session.NewSession {
	return session.NewSession{
		User: u.Name, Key: key, Protocol: a.Protocol, Remote: a.Remote, Epoch: u.Epoch, PasswordLen: pwLen, Whole: whole,
	}
}

// open is step 9 for a sign-in whose code (if any) is already recorded:
// a session for (user, string), written to the store in the next group
// commit. A session the store could not take still lets this sign-in in
// (its code is used): it lives in this instance's memory only.
func (v *Verifier) open(ctx context.Context, a *Attempt, u *store.User, key session.Key, pwLen int, whole bool, r Reason) Decision {
	sess, err := v.sessions.CreateContext(ctx, v.newSession(a, u, key, pwLen, whole))
	if err != nil {
		v.audit.Error("opening session", "user", u.Name, "err", err)
		if sess, err = v.sessions.Prepare(v.newSession(a, u, key, pwLen, whole)); err != nil {
			return deny(ReasonError)
		}
		sess = v.sessions.Add(sess)
	}
	return Decision{Result: Allow, Reason: r, User: u.Name, Session: handle{sess}}
}
