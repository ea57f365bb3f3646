// Package verifiertest builds a real verifier (SQLite store in a temporary
// folder, memdb sessions) for tests of the packages around it, and
// enrolls users in it.
package verifiertest

import (
	"bytes"
	"context"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"

	"github.com/stepgate/stepgate/internal/password"
	"github.com/stepgate/stepgate/internal/seal"
	"github.com/stepgate/stepgate/internal/session"
	"github.com/stepgate/stepgate/internal/store"
	"github.com/stepgate/stepgate/internal/verifier"
)

// Clock is a settable clock, safe for concurrent use.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a clock set to t.
func NewClock(t time.Time) *Clock { return &Clock{t: t} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

// Advance moves the clock on.
func (c *Clock) Advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// Env is a verifier with everything behind it.
type Env struct {
	Dir string
	// PostgresDSN is the store's PostgreSQL database, "" for SQLite.
	PostgresDSN string
	Store       *store.Store
	Sessions    *session.Store
	Verifier    *verifier.Verifier
	Clock       *Clock // nil when the real clock is used
	Audit       *bytes.Buffer
	auditMu     *sync.Mutex
}

// Options tune New.
type Options struct {
	// Clock, when set, drives sessions, codes and the store.
	Clock *Clock
	// Configure may change the verifier's config before it is built.
	Configure func(*verifier.Config)
	// SessionConfig may change the session store's config.
	SessionConfig func(*session.Config)
	// Join, when set, makes this Env another instance on Join's database
	// (the same file, opened again, as a second process would), with
	// sessions and failure counters of its own in memory.
	Join *Env
	// PostgresDSN, when set, puts the store in that PostgreSQL database
	// instead of a SQLite file in the folder (a joining Env takes its
	// Join's).
	PostgresDSN string
}

// New builds an Env in a temporary folder that the test removes.
func New(t testing.TB, opts Options) *Env {
	t.Helper()
	dir := t.TempDir()
	if opts.Join != nil {
		dir = opts.Join.Dir
		opts.PostgresDSN = opts.Join.PostgresDSN
	}
	sealer, err := seal.LoadOrCreate(filepath.Join(dir, "sealing.key"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now
	if opts.Clock != nil {
		now = opts.Clock.Now
	}
	var st *store.Store
	if opts.PostgresDSN != "" {
		st, err = store.OpenPostgres(context.Background(), opts.PostgresDSN, "", sealer, store.Options{Now: now})
	} else {
		st, err = store.Open(context.Background(), filepath.Join(dir, "stepgate.db"), sealer, store.Options{Now: now})
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	scfg := session.Config{HashKey: sealer.Derive("session"), Now: now, Durable: st}
	if opts.SessionConfig != nil {
		opts.SessionConfig(&scfg)
	}
	sessions, err := session.New(scfg)
	if err != nil {
		t.Fatal(err)
	}
	buf, mu := &bytes.Buffer{}, &sync.Mutex{}
	cfg := verifier.Config{
		Store: st, Sessions: sessions, Now: now,
		Audit: slog.New(slog.NewJSONHandler(lockedWriter{buf, mu}, nil)),
	}
	if opts.Configure != nil {
		opts.Configure(&cfg)
	}
	v, err := verifier.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &Env{Dir: dir, PostgresDSN: opts.PostgresDSN, Store: st, Sessions: sessions, Verifier: v, Clock: opts.Clock, Audit: buf, auditMu: mu}
}

type lockedWriter struct {
	b  *bytes.Buffer
	mu *sync.Mutex
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// AuditLog returns what the audit log holds so far.
func (e *Env) AuditLog() string {
	e.auditMu.Lock()
	defer e.auditMu.Unlock()
	return e.Audit.String()
}

// cheapHash keeps test users fast to check; the scheme is the real one.
var cheapHash = password.Params{Memory: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}

// User is an enrolled test account.
type User struct {
	Name     string
	Password string
	Secret   string // base32 TOTP secret
	env      *Env
}

// AddUser creates an account with a password and no two-step.
func (e *Env) AddUser(t testing.TB, name, pw string, mods ...func(*store.NewUser)) *User {
	t.Helper()
	h, err := password.HashWith(pw, cheapHash)
	if err != nil {
		t.Fatal(err)
	}
	nu := store.NewUser{Name: name, PasswordHash: h}
	for _, m := range mods {
		m(&nu)
	}
	if _, err := e.Store.AddUser(context.Background(), nu); err != nil {
		t.Fatal(err)
	}
	e.refresh(t)
	return &User{Name: name, Password: pw, env: e}
}

// Enroll adds a confirmed authenticator to an account (two-step active).
func (e *Env) Enroll(t testing.TB, u *User) {
	t.Helper()
	key, err := totp.Generate(totp.GenerateOpts{Issuer: "stepgate", AccountName: u.Name})
	if err != nil {
		t.Fatal(err)
	}
	a, err := e.Store.AddAuthenticator(context.Background(), u.Name, "phone", key.Secret())
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Store.ConfirmAuthenticator(context.Background(), a.ID, 0); err != nil {
		t.Fatal(err)
	}
	u.Secret = key.Secret()
	e.refresh(t)
}

// AddEnrolled is AddUser followed by Enroll.
func (e *Env) AddEnrolled(t testing.TB, name, pw string) *User {
	t.Helper()
	u := e.AddUser(t, name, pw)
	e.Enroll(t, u)
	return u
}

func (e *Env) refresh(t testing.TB) {
	t.Helper()
	if _, err := e.Verifier.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// Now is the env's time.
func (e *Env) Now() time.Time {
	if e.Clock != nil {
		return e.Clock.Now()
	}
	return time.Now()
}

// Code returns u's current code (at the env's clock).
func (u *User) Code(t testing.TB) string {
	t.Helper()
	return u.CodeAt(t, u.env.Now())
}

// CodeAt returns u's code at time at.
func (u *User) CodeAt(t testing.TB, at time.Time) string {
	t.Helper()
	c, err := u.env.Verifier.TOTP().Code(u.Secret, at)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// NextCode returns u's code for the next time step, which is accepted
// (skew 1) and not yet used: tests that sign in twice in one step need it.
func (u *User) NextCode(t testing.TB) string {
	t.Helper()
	return u.CodeAt(t, u.env.Now().Add(u.env.Verifier.TOTP().Period))
}
