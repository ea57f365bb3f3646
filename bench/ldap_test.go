package bench

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goldap "github.com/go-ldap/ldap/v3"
	"github.com/pquerna/otp/totp"

	"github.com/stepgate/stepgate/internal/config"
	"github.com/stepgate/stepgate/internal/directory"
	"github.com/stepgate/stepgate/internal/loadgen"
	"github.com/stepgate/stepgate/internal/password"
	"github.com/stepgate/stepgate/internal/server"
	"github.com/stepgate/stepgate/internal/session"
	"github.com/stepgate/stepgate/internal/store"
	"github.com/stepgate/stepgate/internal/testenv/slapd"
	"github.com/stepgate/stepgate/internal/verifier"
	"github.com/stepgate/stepgate/internal/verifier/verifiertest"
	"github.com/stepgate/stepgate/protocols/ldap"
)

const base = slapd.Suffix

// benchUser is one account, the same in stepgate and in slapd.
type benchUser struct {
	name, password string
	key            []byte // TOTP key
	secret         string // the key in base32, as authenticator apps take it
	ssha           string
}

func (u benchUser) dn() string { return "uid=" + u.name + ",ou=people," + base }

func (u benchUser) code(at time.Time) string {
	c, err := totp.GenerateCode(u.secret, at)
	if err != nil {
		panic(err)
	}
	return c
}

func makeUsers(t *testing.T, prefix string, n int) []benchUser {
	t.Helper()
	us := make([]benchUser, n)
	for i := range us {
		key := make([]byte, 20)
		rand.Read(key)
		pw := fmt.Sprintf("pass-%s%d-x", prefix, i)
		h, err := password.HashSSHA(pw)
		if err != nil {
			t.Fatal(err)
		}
		us[i] = benchUser{name: fmt.Sprintf("%s%06d", prefix, i), password: pw, key: key,
			secret: strings.TrimRight(base32.StdEncoding.EncodeToString(key), "="), ssha: h}
	}
	return us
}

func slapdLDIF(us []benchUser, withTOTP bool) string {
	var b strings.Builder
	for _, u := range us {
		p := slapd.Person{UID: u.name, Password: u.ssha}
		if withTOTP {
			p.TOTPSecret = u.key
		}
		b.WriteString(p.LDIF())
	}
	return b.String()
}

// stepgate is an in-process LDAP front end over a real store and
// verifier, with a clock the harness moves so that every account has a
// fresh code for every run.
type stepgate struct {
	env  *verifiertest.Env
	srv  *ldap.Server
	addr string
}

// startStepgate starts one; clock nil is the real clock (needed where
// failure counters must age, as they do in production).
func startStepgate(t *testing.T, us []benchUser, hash func(benchUser) string, limits *session.Limits, mod func(*config.LDAP), clock *verifiertest.Clock) *stepgate {
	t.Helper()
	return startStepgateOn(t, "", us, hash, limits, mod, clock)
}

// startStepgateOn is startStepgate with the store in the PostgreSQL
// database dsn ("" for SQLite).
func startStepgateOn(t *testing.T, dsn string, us []benchUser, hash func(benchUser) string, limits *session.Limits, mod func(*config.LDAP), clock *verifiertest.Clock) *stepgate {
	t.Helper()
	sg := newStepgate(t, dsn, nil, limits, mod, clock)
	imp := make([]store.Imported, len(us))
	for i, u := range us {
		imp[i] = store.Imported{NewUser: store.NewUser{Name: u.name, PasswordHash: hash(u)}, TOTPSecret: u.secret}
	}
	if err := sg.env.Store.Import(context.Background(), imp); err != nil {
		t.Fatal(err)
	}
	if _, err := sg.env.Verifier.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	return sg
}

// joinStepgate starts a second instance on first's store (its database,
// sealing key and clock), with a memory and an LDAP listener of its own:
// another process of a cluster.
func joinStepgate(t *testing.T, first *stepgate) *stepgate {
	t.Helper()
	sg := newStepgate(t, first.env.PostgresDSN, first.env, nil, nil, first.env.Clock)
	if _, err := sg.env.Verifier.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	return sg
}

// newStepgate starts an instance's verifier and LDAP front end on an
// empty store, or on join's.
func newStepgate(t *testing.T, dsn string, join *verifiertest.Env, limits *session.Limits, mod func(*config.LDAP), clock *verifiertest.Clock) *stepgate {
	t.Helper()
	env := verifiertest.New(t, verifiertest.Options{
		PostgresDSN: dsn,
		Join:        join,
		Clock:       clock,
		Configure: func(c *verifier.Config) {
			c.Audit = slog.New(slog.NewTextHandler(io.Discard, nil))
			c.AppPasswordKey = benchAppKey
			if limits == nil {
				// The load generator is one address signing in many
				// accounts at once, as an application in front is:
				// counted per account only (lockout.applications).
				// Otherwise admission would let five of its attempts be
				// evaluated at a time.
				c.Applications = verifier.Networks{netip.MustParsePrefix("127.0.0.0/8")}
			}
		},
		SessionConfig: func(c *session.Config) {
			if limits != nil {
				c.Limits = *limits
			}
		},
	})
	cfg := config.Default().LDAP
	cfg.Listen = "127.0.0.1:0"
	cfg.MaxConns = 100000
	if mod != nil {
		mod(&cfg)
	}
	// A directory as serve builds it, where the measurement names an
	// identity attribute (directory-backed accounts); otherwise the
	// proxy's own anonymous one.
	var dir *directory.Directory
	if cfg.Upstream != nil && cfg.Upstream.IDAttribute != "" {
		c := config.Default()
		c.LDAP = cfg
		var err error
		if dir, err = server.NewDirectory(c, slog.New(slog.DiscardHandler)); err != nil {
			t.Fatal(err)
		}
	}
	srv, err := ldap.New(ldap.Options{Config: server.LDAPConfig(cfg), Verifier: env.Verifier, Store: env.Store, Directory: dir})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { srv.Serve(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return &stepgate{env: env, srv: srv, addr: srv.Addr()}
}

func (s *stepgate) url() string { return "ldap://" + s.addr }

// bindWorkers makes one go-ldap connection per worker whose op is a bind
// chosen by pick; a failed bind is a failure, not a stop.
func bindWorkers(url string, pick func(worker, n int) (dn, pw string)) func(i int) (loadgen.Worker, error) {
	return func(i int) (loadgen.Worker, error) {
		c, err := goldap.DialURL(url)
		if err != nil {
			return loadgen.Worker{}, err
		}
		c.SetTimeout(30 * time.Second)
		return loadgen.Worker{
			Op: func(n int) error {
				dn, pw := pick(i, n)
				return c.Bind(dn, pw)
			},
			Close: func() { c.Close() },
		}, nil
	}
}

type ldapBench struct {
	p     profile
	users []benchUser
	// sg: {SSHA} hashes as slapd's, default lockout.
	sg *stepgate
	// plain and otp are slapd without and with the otp overlay, durable.
	plain, otp *slapd.Server
	otpNext    atomic.Int64 // next slapd+otp account with an unused code
	// stored are the session strings of sg's first 64 accounts, apps
	// their LDAP app passwords.
	stored, apps []string
}

// benchAppKey keys the bench's app passwords (serve derives it from the
// sealing key).
var benchAppKey = []byte("stepgate bench app password key!")

func newLDAPBench(t *testing.T, p profile) *ldapBench {
	t.Helper()
	b := &ldapBench{p: p, users: makeUsers(t, "u", p.users)}
	t.Logf("starting slapd (plain and otp) and stepgate with %d accounts each", p.users)
	b.plain = slapd.Start(t, slapd.Options{Quiet: true, LDIF: slapdLDIF(b.users, false)})
	b.otp = slapd.Start(t, slapd.Options{Quiet: true, OTP: true, LDIF: slapdLDIF(b.users, true)})
	b.sg = startStepgate(t, b.users, func(u benchUser) string { return u.ssha }, nil, nil, verifiertest.NewClock(time.Now()))
	// Sessions for the legacy clients: one stored string per connection.
	now := b.sg.env.Clock.Now()
	for i := 0; i < 64 && i < len(b.users); i++ {
		u := b.users[i]
		s := u.password + u.code(now)
		d := b.sg.env.Verifier.Verify(context.Background(), verifier.Attempt{Protocol: "ldap", User: u.name, Secret: s, Remote: "127.0.0.1"})
		if !d.Allowed() {
			t.Fatalf("setting up sessions: %s", d.Reason)
		}
		b.stored = append(b.stored, s)
		app := fmt.Sprintf("benchapp%08d", i)
		if _, err := b.sg.env.Store.AddAppPassword(context.Background(), u.name, "bench", verifier.AppPasswordHash(benchAppKey, u.name, app), []string{"ldap"}); err != nil {
			t.Fatal(err)
		}
		b.apps = append(b.apps, app)
	}
	if _, err := b.sg.env.Verifier.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	return b
}

func (b *ldapBench) close() {}

// firstSignIns is a side that signs every account in with a fresh code
// on sg (a fresh step for every account on each run).
func (b *ldapBench) firstSignIns(name string, sg *stepgate) side {
	users := b.users
	return side{name: name, run: func(t *testing.T, conns, rep int) (loadgen.Result, error) {
		sg.env.Clock.Advance(90 * time.Second)
		now := sg.env.Clock.Now()
		return b.run(conns, len(users), bindWorkers(sg.url(), func(_, n int) (string, string) {
			return users[n].dn(), users[n].password + users[n].code(now)
		}))
	}}
}

func (b *ldapBench) run(conns int, max int, newWorker func(int) (loadgen.Worker, error)) (loadgen.Result, error) {
	return loadgen.Run(context.Background(), loadgen.Options{Conns: conns, Duration: b.p.duration, Max: max}, newWorker)
}

// takeOTP reserves n slapd+otp accounts whose codes are unused.
func (b *ldapBench) takeOTP(n int) (first int, ok bool) {
	end := int(b.otpNext.Add(int64(n)))
	if end > len(b.users) {
		return 0, false
	}
	return end - n, true
}

func (b *ldapBench) measurements() []measurement {
	users := b.users
	runs := len(b.p.conns) * b.p.reps
	perRun := len(users) / (runs + 1) // first sign-ins per slapd+otp run (one spare share)
	reconnect := side{name: "stepgate (session hit)", run: func(t *testing.T, conns, rep int) (loadgen.Result, error) {
		return b.run(conns, 0, bindWorkers(b.sg.url(), func(w, _ int) (string, string) { return users[w].dn(), b.stored[w] }))
	}}
	first := b.firstSignIns("stepgate ({SSHA})", b.sg)
	otpFirst := side{name: "slapd+otp", run: func(t *testing.T, conns, rep int) (loadgen.Result, error) {
		start, ok := b.takeOTP(perRun)
		if !ok {
			return loadgen.Result{}, fmt.Errorf("out of slapd+otp accounts with unused codes")
		}
		now := time.Now()
		return b.run(conns, perRun, bindWorkers(b.otp.URL(), func(_, n int) (string, string) {
			u := users[start+n]
			return u.dn(), u.password + u.code(now)
		}))
	}}
	return []measurement{
		{id: "reconnect-plain", title: "Legacy reconnect: binds with the stored string", unit: "binds/s",
			stepgate: reconnect, target: 2.0,
			ref: side{name: "slapd plain bind", run: func(t *testing.T, conns, rep int) (loadgen.Result, error) {
				return b.run(conns, 0, bindWorkers(b.plain.URL(), func(w, _ int) (string, string) { return users[w].dn(), users[w].password }))
			}}},
		{id: "reconnect-otp", title: "Legacy reconnect: the same string against slapd+otp", unit: "binds/s",
			stepgate: reconnect, showSuccess: true, note: "slapd+otp refuses a code it has seen: only a client's first bind succeeds",
			ref: side{name: "slapd+otp", run: func(t *testing.T, conns, rep int) (loadgen.Result, error) {
				start, ok := b.takeOTP(conns)
				if !ok {
					return loadgen.Result{}, fmt.Errorf("out of slapd+otp accounts with unused codes")
				}
				now := time.Now()
				secrets := make([]string, conns)
				for w := range secrets {
					secrets[w] = users[start+w].password + users[start+w].code(now)
				}
				return b.run(conns, 0, bindWorkers(b.otp.URL(), func(w, _ int) (string, string) { return users[start+w].dn(), secrets[w] }))
			}}},
		{id: "app-password", title: "App passwords: binds with an app password, next to session hits", unit: "binds/s",
			stepgate: side{name: "stepgate (app password)", run: func(t *testing.T, conns, rep int) (loadgen.Result, error) {
				return b.run(conns, 0, bindWorkers(b.sg.url(), func(w, _ int) (string, string) { return users[w].dn(), b.apps[w] }))
			}},
			ref:  reconnect,
			note: "an app password is checked like a first sign-in: the store is asked for another instance's session, admission reads the store's lockout log, then one HMAC per app password of the account and its own session; a session hit skips all of it"},
		{id: "first-sign-in", title: "First sign-in: password + fresh code, durable", unit: "binds/s",
			stepgate: first, ref: otpFirst, target: 5.0,
			note: "both sides {SSHA} (salted SHA-1); stepgate group-commits the replay guard in SQLite (WAL, synchronous=FULL), slapd+otp writes it to mdb"},
	}
}

// failureMeasurements need their own stepgate instances: the lockout
// gate would otherwise lock 127.0.0.1 out of every other measurement.
func (b *ldapBench) failureMeasurements(t *testing.T) []measurement {
	few := b.users[:min(len(b.users), 200)]
	open := startStepgate(t, few, func(u benchUser) string { return u.ssha },
		&session.Limits{MaxFailures: 1 << 30, Window: time.Nanosecond, Lockout: time.Nanosecond, MaxLockout: time.Nanosecond}, nil, nil)
	// Default lockout, and the address counted too (not an application).
	locked := startStepgate(t, few[:1], func(u benchUser) string { return u.ssha }, &session.DefaultLimits, nil, nil)
	otpWrong := side{name: "slapd+otp wrong code", run: func(t *testing.T, conns, rep int) (loadgen.Result, error) {
		return invert(b.run(conns, 0, bindWorkers(b.otp.URL(), func(w, n int) (string, string) {
			u := b.users[len(b.users)-1-(n%64)] // accounts the other runs do not use
			return u.dn(), u.password + "000000"
		})))
	}}
	return []measurement{
		{id: "wrong-code", title: "Failures: wrong code (refusals per second)", unit: "refusals/s", ref: otpWrong,
			stepgate: side{name: "stepgate wrong code", run: func(t *testing.T, conns, rep int) (loadgen.Result, error) {
				return invert(b.run(conns, 0, bindWorkers(open.url(), func(_, n int) (string, string) {
					u := few[n%len(few)]
					return u.dn(), u.password + "000000"
				})))
			}}},
		{id: "lockout", title: "Failures: a locked-out account and address (refusals per second)", unit: "refusals/s", ref: otpWrong,
			note: "stepgate refuses before any password or code check; slapd has no lockout here",
			stepgate: side{name: "stepgate locked out", run: func(t *testing.T, conns, rep int) (loadgen.Result, error) {
				return invert(b.run(conns, 0, bindWorkers(locked.url(), func(_, n int) (string, string) {
					// Distinct guesses: a repeated string counts once, so
					// only distinct ones reach the lockout.
					return few[0].dn(), few[0].password + fmt.Sprintf("%06d", n%1000000)
				})))
			}}},
	}
}

// invert counts refusals as the successes of a failure measurement.
func invert(r loadgen.Result, err error) (loadgen.Result, error) {
	r.OK, r.Failures = r.Failures, r.OK
	return r, err
}

// concurrentOneCode: 16 connections bind at once with one fresh
// password+code. stepgate: all succeed, one session. slapd+otp: its
// replay guard races.
func (b *ldapBench) concurrentOneCode(t *testing.T, p profile) []string {
	const n = 16
	burst := func(url, dn, secret string) int {
		conns := make([]*goldap.Conn, n)
		for i := range conns {
			c, err := goldap.DialURL(url)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			conns[i] = c
		}
		var ok atomic.Int64
		var wg sync.WaitGroup
		gate := make(chan struct{})
		for _, c := range conns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-gate
				if c.Bind(dn, secret) == nil {
					ok.Add(1)
				}
			}()
		}
		close(gate)
		wg.Wait()
		return int(ok.Load())
	}
	var out []string
	for rep := 0; rep < 3; rep++ {
		b.sg.env.Clock.Advance(90 * time.Second)
		u := b.users[100+rep]
		before := len(b.sg.env.Sessions.List(u.name))
		okSG := burst(b.sg.url(), u.dn(), u.password+u.code(b.sg.env.Clock.Now()))
		sessions := len(b.sg.env.Sessions.List(u.name)) - before
		start, has := b.takeOTP(1)
		okOTP := -1
		if has {
			v := b.users[start]
			okOTP = burst(b.otp.URL(), v.dn(), v.password+v.code(time.Now()))
		}
		out = append(out, fmt.Sprintf("Concurrent binds with one fresh code (%d at once), try %d: stepgate %d/%d succeeded with %d session(s) (target: all, one session: %s); slapd+otp %d/%d succeeded",
			n, rep+1, okSG, n, sessions, met(okSG == n && sessions == 1), okOTP, n))
	}
	return out
}

func met(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT met"
}

// proxyMeasurements: client -> stepgate (proxy mode) -> slapd against
// client -> slapd.
func (b *ldapBench) proxyMeasurements(t *testing.T) ([]measurement, bool) {
	users := b.users
	px := startStepgate(t, users[:min(len(users), 64)], func(u benchUser) string { return u.ssha }, nil, func(c *config.LDAP) {
		c.Upstream = &config.LDAPUpstream{URLs: []string{b.plain.URL()}, UserAttribute: "uid", Timeout: config.Duration(10 * time.Second)}
	}, verifiertest.NewClock(time.Now()))
	now := px.env.Clock.Now()
	stored := make([]string, min(len(users), 64))
	for i := range stored {
		stored[i] = users[i].password + users[i].code(now)
		c, err := goldap.DialURL(px.url())
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Bind(users[i].dn(), stored[i]); err != nil {
			t.Fatalf("proxy setup bind: %v", err)
		}
		c.Close()
	}
	size := min(len(users), 1000)
	search := func(url string, pw func(w int) string) func(int) (loadgen.Worker, error) {
		return func(w int) (loadgen.Worker, error) {
			c, err := goldap.DialURL(url)
			if err != nil {
				return loadgen.Worker{}, err
			}
			if err := c.Bind(users[w].dn(), pw(w)); err != nil {
				c.Close()
				return loadgen.Worker{}, err
			}
			return loadgen.Worker{Op: func(int) error {
				res, err := c.Search(goldap.NewSearchRequest("ou=people,"+base, goldap.ScopeSingleLevel, goldap.NeverDerefAliases,
					size, 0, false, "(uid=u000*)", []string{"uid"}, nil))
				if err == nil && len(res.Entries) != size {
					err = fmt.Errorf("%d entries, want %d", len(res.Entries), size)
				}
				return err
			}, Close: func() { c.Close() }}, nil
		}
	}
	// OpenLDAP's own proxy in front of the same slapd: what a user would
	// otherwise put there (plain back-ldap, binds and searches passed on).
	backLDAP := slapd.Start(t, slapd.Options{Quiet: true, Proxy: b.plain.URL()})
	perEntry := func(r loadgen.Result, err error) (loadgen.Result, error) {
		r.OK *= size
		return r, err
	}
	return []measurement{
		{id: "proxy-bind", title: "LDAP proxy: binds with the stored string, one connection each", unit: "binds/s", target: 0.9, alsoTarget: 1.0,
			note: "each connection binds again and again as its user: stepgate's session hit, with the upstream bind skipped while the connection is bound upstream with that password (re-checked every 30 s); back-ldap and slapd bind every time",
			also: &side{name: "slapd back-ldap", run: func(t *testing.T, conns, rep int) (loadgen.Result, error) {
				return b.run(conns, 0, bindWorkers(backLDAP.URL(), func(w, _ int) (string, string) { return users[w].dn(), users[w].password }))
			}},
			stepgate: side{name: "via stepgate proxy", run: func(t *testing.T, conns, rep int) (loadgen.Result, error) {
				return b.run(conns, 0, bindWorkers(px.url(), func(w, _ int) (string, string) { return users[w].dn(), stored[w] }))
			}},
			ref: side{name: "slapd direct", run: func(t *testing.T, conns, rep int) (loadgen.Result, error) {
				return b.run(conns, 0, bindWorkers(b.plain.URL(), func(w, _ int) (string, string) { return users[w].dn(), users[w].password }))
			}}},
		{id: "proxy-search", title: fmt.Sprintf("LDAP proxy: search entries (%d per search)", size), unit: "entries/s", target: 0.9, alsoTarget: 1.0,
			note: "stepgate relays the directory's messages as raw BER (message ID rewritten); back-ldap decodes and re-encodes",
			also: &side{name: "slapd back-ldap", run: func(t *testing.T, conns, rep int) (loadgen.Result, error) {
				return perEntry(b.run(conns, 0, search(backLDAP.URL(), func(w int) string { return users[w].password })))
			}},
			stepgate: side{name: "via stepgate proxy", run: func(t *testing.T, conns, rep int) (loadgen.Result, error) {
				return perEntry(b.run(conns, 0, search(px.url(), func(w int) string { return stored[w] })))
			}},
			ref: side{name: "slapd direct", run: func(t *testing.T, conns, rep int) (loadgen.Result, error) {
				return perEntry(b.run(conns, 0, search(b.plain.URL(), func(w int) string { return users[w].password })))
			}}},
	}, true
}
