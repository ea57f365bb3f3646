package ldap

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	goldap "github.com/go-ldap/ldap/v3"

	"github.com/stepgate/stepgate/internal/password"
	"github.com/stepgate/stepgate/internal/store"
	"github.com/stepgate/stepgate/internal/testenv"
	"github.com/stepgate/stepgate/internal/verifier/verifiertest"
)

const base = "dc=example,dc=org"

// rig is a running LDAP front end over a real verifier and store.
type rig struct {
	*verifiertest.Env
	srv  *Server
	addr string
	logs *testenv.Buffer
}

func newRig(t testing.TB, mod func(*Config), tlsCfg *tls.Config) *rig {
	t.Helper()
	return newRigWith(t, mod, tlsCfg, verifiertest.Options{})
}

// newRigWith is newRig with the verifier's and the session store's
// configuration changed by opts (its clock is set here).
func newRigWith(t testing.TB, mod func(*Config), tlsCfg *tls.Config, opts verifiertest.Options) *rig {
	t.Helper()
	opts.Clock = verifiertest.NewClock(time.Now())
	e := verifiertest.New(t, opts)
	// config.Default's values, on a free port.
	cfg := Config{Listen: "127.0.0.1:0", BaseDN: base, ReadTimeout: 10 * time.Second, IdleTimeout: 5 * time.Minute,
		MaxMessageBytes: 1 << 20, MaxConns: 4096}
	if mod != nil {
		mod(&cfg)
	}
	logs := &testenv.Buffer{}
	srv, err := New(Options{Config: cfg, TLS: tlsCfg, Verifier: e.Verifier, Store: e.Store,
		Log: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	testenv.Serve(t, srv)
	return &rig{Env: e, srv: srv, addr: srv.Addr(), logs: logs}
}

func (r *rig) url() string { return "ldap://" + r.addr }

// run runs an OpenLDAP client and returns its exit code and output.
func run(t testing.TB, env []string, name string, args ...string) (int, string) {
	t.Helper()
	path := testenv.NeedProgram(t, name)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	// A throwaway ldap.conf: the machine's must not change what the test
	// sees, and LDAPNOINIT would also ignore the LDAPTLS_* variables.
	cmd.Env = append(append(os.Environ(), "LDAPCONF=/dev/null", "LDAPRC=/dev/null"), env...)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, string(out)
	case errors.As(err, &ee):
		return ee.ExitCode(), string(out)
	}
	t.Fatalf("%s: %v", name, err)
	return -1, ""
}

func (r *rig) whoami(t testing.TB, dn, secret string, extra ...string) (int, string) {
	t.Helper()
	args := append([]string{"-x", "-H", r.url(), "-D", dn, "-w", secret}, extra...)
	return run(t, nil, "ldapwhoami", args...)
}

func TestWhoAmIWithPasswordAndCode(t *testing.T) {
	r := newRig(t, nil, nil)
	alice := r.AddEnrolled(t, "alice", "classmate")
	r.AddEnrolled(t, "bob", "bobsecret")
	dn := "uid=alice,ou=people," + base
	code := alice.Code(t)

	for _, c := range []struct{ name, dn, secret string }{
		{"wrong code", dn, "classmate" + wrongCode(code)},
		{"wrong password", dn, "classmatf" + code},
		{"unknown user", "uid=nobody,ou=people," + base, "classmate" + code},
		{"no code", dn, "classmate"},
	} {
		if rc, out := r.whoami(t, c.dn, c.secret); rc != 49 {
			t.Errorf("%s: exit %d, want 49 (invalidCredentials): %s", c.name, rc, out)
		}
	}
	rc, out := r.whoami(t, dn, "classmate"+code)
	if rc != 0 || !strings.Contains(out, "dn:uid=alice,ou=people,"+base) {
		t.Fatalf("password+code: exit %d: %s", rc, out)
	}
	// A code once used opens no second session, even with bob's password.
	if rc, _ := r.whoami(t, "uid=bob,ou=people,"+base, "bobsecret"+code); rc != 49 {
		t.Errorf("alice's used code with bob's password: exit %d, want 49", rc)
	}
	// Plain names and NAME@DOMAIN name the same account; the session
	// keeps the stored string working after the code has rolled over.
	r.Clock.Advance(10 * time.Minute)
	for _, name := range []string{dn, "UID=Alice, OU=People, DC=Example, DC=Org", "alice", "alice@example.org"} {
		if rc, out := r.whoami(t, name, "classmate"+code); rc != 0 || !strings.Contains(out, "dn:uid=alice,ou=people,") {
			t.Errorf("session hit as %q: exit %d: %s", name, rc, out)
		}
	}
	// Revoking alice's sessions ends the string.
	if err := r.Store.BumpEpoch(context.Background(), "alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Verifier.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if rc, _ := r.whoami(t, dn, "classmate"+code); rc != 49 {
		t.Errorf("after revoke: exit %d, want 49", rc)
	}
	if strings.Contains(r.logs.String(), "classmate") || strings.Contains(r.logs.String(), code) {
		t.Error("a password or code reached the log")
	}
}

func wrongCode(code string) string {
	b := []byte(code)
	b[0] = '0' + (b[0]-'0'+1)%10
	return string(b)
}

func TestAnonymousAndEmptyPasswordBinds(t *testing.T) {
	r := newRig(t, nil, nil)
	r.AddEnrolled(t, "alice", "classmate")
	// An empty password with a name is an unauthenticated bind, never a
	// sign-in (RFC 4513 5.1.2).
	c, err := goldap.DialURL(r.url())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.UnauthenticatedBind("uid=alice,ou=people," + base); !goldap.IsErrorWithCode(err, 49) {
		t.Errorf("empty-password bind: %v, want invalidCredentials", err)
	}
	rc, out := run(t, nil, "ldapsearch", "-x", "-LLL", "-H", r.url(), "-b", base, "(uid=alice)")
	if rc != 50 {
		t.Errorf("anonymous search: exit %d, want 50 (insufficientAccessRights): %s", rc, out)
	}
	// The root DSE is for everyone.
	rc, out = run(t, nil, "ldapsearch", "-x", "-LLL", "-H", r.url(), "-s", "base", "-b", "", "+")
	if rc != 0 || !strings.Contains(out, "namingContexts: "+base) || !strings.Contains(out, "supportedLDAPVersion: 3") ||
		!strings.Contains(out, "supportedExtension: "+oidWhoAmI) {
		t.Errorf("root DSE: exit %d: %s", rc, out)
	}
	if _, err := c.SimpleBind(&goldap.SimpleBindRequest{AllowEmptyPassword: true}); err != nil {
		t.Errorf("anonymous bind: %v", err)
	}
}

// addService adds an application's account that binds with a password.
func addService(t testing.TB, st *store.Store, name, pw string) {
	t.Helper()
	h, err := password.Hash(pw)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.AddUser(context.Background(), store.NewUser{Name: name, PasswordHash: h, Service: true}); err != nil {
		t.Fatal(err)
	}
}

func TestSearchAsServiceAccount(t *testing.T) {
	r := newRig(t, nil, nil)
	ctx := context.Background()
	for _, u := range []struct{ name, display, mail string }{
		{"alice", "Alice Liddell", "alice@example.org"},
		{"bob", "Bob Builder", "bob@example.org"},
		{"carol", "Carol Danvers", ""},
	} {
		r.AddUser(t, u.name, "pw-"+u.name, func(nu *store.NewUser) { nu.DisplayName, nu.Email = u.display, u.mail })
	}
	if err := r.Store.AddToGroups(ctx, "alice", []string{"staff", "admins"}); err != nil {
		t.Fatal(err)
	}
	if err := r.Store.AddToGroups(ctx, "bob", []string{"staff"}); err != nil {
		t.Fatal(err)
	}
	addService(t, r.Store, "nextcloud", "app-secret")
	svc := "uid=nextcloud,ou=services," + base
	search := func(filter string, extra ...string) (int, string) {
		args := append([]string{"-x", "-LLL", "-H", r.url(), "-D", svc, "-w", "app-secret", "-b", base, filter}, extra...)
		return run(t, nil, "ldapsearch", args...)
	}
	dns := func(out string) []string {
		var got []string
		for _, l := range strings.Split(out, "\n") {
			if strings.HasPrefix(l, "dn: ") {
				got = append(got, strings.TrimPrefix(l, "dn: "))
			}
		}
		return got
	}
	people := func(names ...string) string {
		var s []string
		for _, n := range names {
			s = append(s, "uid="+n+",ou=people,"+base)
		}
		return strings.Join(s, "|")
	}
	for _, c := range []struct{ filter, want string }{
		{"(uid=alice)", people("alice")},
		{"(UID=ALICE)", people("alice")},
		{"(cn=*Build*)", people("bob")},
		{"(cn=Al*ll)", people("alice")},
		{"(&(objectClass=inetOrgPerson)(mail=*))", people("alice", "bob")},
		{"(|(uid=carol)(uid=bob))", people("bob", "carol")},
		{"(&(objectClass=inetOrgPerson)(!(mail=*)))", people("carol")},
		{"(&(objectClass=inetOrgPerson)(uid>=bob))", people("bob", "carol")},
		{"(&(objectClass=inetOrgPerson)(uid<=bob))", people("alice", "bob")},
		{"(uid~=carol)", people("carol")},
		{"(memberOf=cn=admins,ou=groups," + base + ")", people("alice")},
		{"(&(objectClass=groupOfNames)(member=uid=bob,ou=people," + base + "))", "cn=staff,ou=groups," + base},
		{"(objectClass=account)", svc},
		{"(noSuchAttribute=x)", ""},
	} {
		rc, out := search(c.filter, "dn")
		if got := strings.Join(dns(out), "|"); rc != 0 || got != c.want {
			t.Errorf("filter %s: exit %d, got %q, want %q\n%s", c.filter, rc, got, c.want, out)
		}
	}
	rc, out := search("(uid=alice)", "mail", "memberOf")
	if rc != 0 || !strings.Contains(out, "mail: alice@example.org") || !strings.Contains(out, "memberOf: cn=admins,ou=groups,"+base) ||
		strings.Contains(out, "cn: ") {
		t.Errorf("attribute selection: exit %d: %s", rc, out)
	}
	if rc, out := search("(objectClass=inetOrgPerson)", "-z", "2", "dn"); rc != 4 || len(dns(out)) != 2 {
		t.Errorf("size limit 2: exit %d (want 4), %d entries: %s", rc, len(dns(out)), out)
	}
	rc, out = run(t, nil, "ldapsearch", "-x", "-LLL", "-H", r.url(), "-D", svc, "-w", "app-secret", "-s", "one",
		"-b", "ou=groups,"+base, "(objectClass=*)", "cn")
	if rc != 0 || strings.Join(dns(out), "|") != "cn=admins,ou=groups,"+base+"|cn=staff,ou=groups,"+base {
		t.Errorf("one-level search of groups: exit %d: %s", rc, out)
	}
	if rc, out := run(t, nil, "ldapsearch", "-x", "-LLL", "-H", r.url(), "-D", svc, "-w", "app-secret",
		"-b", "ou=nowhere,"+base, "(objectClass=*)"); rc != 32 {
		t.Errorf("search below a missing entry: exit %d, want 32 (noSuchObject): %s", rc, out)
	}
	// A wrong password for the service account is a plain failure.
	if rc, _ := run(t, nil, "ldapsearch", "-x", "-H", r.url(), "-D", svc, "-w", "nope", "-b", base, "(uid=*)"); rc != 49 {
		t.Errorf("service account with a wrong password: exit %d, want 49", rc)
	}
	// Compare, through go-ldap.
	c, err := goldap.DialURL(r.url())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Bind(svc, "app-secret"); err != nil {
		t.Fatal(err)
	}
	if ok, err := c.Compare("uid=alice,ou=people,"+base, "mail", "ALICE@example.org"); err != nil || !ok {
		t.Errorf("compare mail: %v, %v", ok, err)
	}
	if ok, err := c.Compare("uid=alice,ou=people,"+base, "uid", "bob"); err != nil || ok {
		t.Errorf("compare uid=bob on alice: %v, %v", ok, err)
	}
	if res, err := c.WhoAmI(nil); err != nil || res.AuthzID != "dn:"+svc {
		t.Errorf("whoami = %+v, %v", res, err)
	}
	if err := c.Add(goldap.NewAddRequest("uid=eve,ou=people,"+base, nil)); !goldap.IsErrorWithCode(err, 53) {
		t.Errorf("add: %v, want unwillingToPerform", err)
	}
}

func TestSASLBindRefused(t *testing.T) {
	r := newRig(t, nil, nil)
	c, err := goldap.DialURL(r.url())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	err = c.ExternalBind()
	if !goldap.IsErrorWithCode(err, 7) {
		t.Errorf("SASL EXTERNAL bind: %v, want authMethodNotSupported", err)
	}
}

func TestStartTLSAndLDAPS(t *testing.T) {
	pki := testenv.NewPKI(t)
	r := newRig(t, func(c *Config) { c.LDAPSListen = "127.0.0.1:0" }, pki.Server)
	alice := r.AddEnrolled(t, "alice", "classmate")
	env := []string{"LDAPTLS_CACERT=" + pki.CAFile, "LDAPTLS_REQCERT=demand"}
	secret := "classmate" + alice.Code(t)
	dn := "uid=alice,ou=people," + base
	rc, out := run(t, env, "ldapwhoami", "-x", "-ZZ", "-H", "ldap://localhost:"+port(r.addr), "-D", dn, "-w", secret)
	if rc != 0 || !strings.Contains(out, "dn:"+dn) {
		t.Fatalf("ldapwhoami -ZZ: exit %d: %s", rc, out)
	}
	rc, out = run(t, env, "ldapwhoami", "-x", "-H", "ldaps://localhost:"+port(r.srv.LDAPSAddr()), "-D", dn, "-w", secret)
	if rc != 0 || !strings.Contains(out, "dn:"+dn) {
		t.Fatalf("ldapwhoami over ldaps: exit %d: %s", rc, out)
	}
	// The root DSE offers StartTLS on the plain port only.
	rc, out = run(t, env, "ldapsearch", "-x", "-LLL", "-H", r.url(), "-s", "base", "-b", "", "supportedExtension")
	if rc != 0 || !strings.Contains(out, oidStartTLS) {
		t.Errorf("root DSE without StartTLS: %d %s", rc, out)
	}
}

func port(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

// TestBadInputEndsOnlyItsConnection: garbage, truncated, oversized and
// idle connections each end on their own while a client keeps working.
func TestBadInputEndsOnlyItsConnection(t *testing.T) {
	r := newRig(t, func(c *Config) {
		c.MaxMessageBytes = 64 << 10
		c.ReadTimeout = 500 * time.Millisecond
	}, nil)
	addService(t, r.Store, "app", "app-secret")
	good, err := goldap.DialURL(r.url())
	if err != nil {
		t.Fatal(err)
	}
	defer good.Close()
	stillGood := func(when string) {
		t.Helper()
		if err := good.Bind("uid=app,ou=services,"+base, "app-secret"); err != nil {
			t.Fatalf("%s: the well-behaved client failed: %v", when, err)
		}
	}
	stillGood("before")

	random := make([]byte, 4096)
	rand.Read(random)
	random[0] = 0x30 // past the first check, into the decoder
	bigDN := strings.Repeat("a", 100<<10)
	huge := []byte{0x30, 0x84, 0x7f, 0xff, 0xff, 0xff}
	bind := func(name string) []byte {
		return encodeRawBind(1, name, "x")
	}
	for _, c := range []struct {
		name string
		in   []byte
		want string // what the server logs
	}{
		{"random bytes", random, "bad request"},
		{"not a sequence", []byte("GET / HTTP/1.1\r\n\r\n"), "bad request"},
		{"oversized length", huge, "bad request"},
		{"100 KiB bind DN", bind(bigDN), "bad request"},
		{"truncated message", bind("uid=alice")[:10], "timed out"},
	} {
		nc, err := net.Dial("tcp", r.addr)
		if err != nil {
			t.Fatal(err)
		}
		nc.Write(c.in)
		nc.SetReadDeadline(time.Now().Add(10 * time.Second))
		// The server must close: EOF, or a reset when it hung up on
		// bytes it did not read. Only a timeout is a failure.
		_, err = io.ReadAll(nc)
		nc.Close()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("%s: connection not closed by the server: %v", c.name, err)
		}
		stillGood(c.name)
	}
	// Many idle connections: the server keeps serving.
	var idle []net.Conn
	for i := 0; i < 1000; i++ {
		nc, err := net.Dial("tcp", r.addr)
		if err != nil {
			t.Fatal(err)
		}
		idle = append(idle, nc)
	}
	stillGood("1,000 idle connections")
	for _, nc := range idle {
		nc.Close()
	}
	logs := r.logs.String()
	for _, want := range []string{"bad request", "timed out"} {
		if !strings.Contains(logs, want) {
			t.Errorf("log has no %q line:\n%s", want, logs)
		}
	}
}

// encodeRawBind builds a simple bind request by hand, as a broken client
// might send it.
func encodeRawBind(id int64, name, pw string) []byte {
	p := envelope(id)
	op := newBindOp(name, pw)
	p.AppendChild(op)
	return p.Bytes()
}

func TestConnectionCap(t *testing.T) {
	r := newRig(t, func(c *Config) { c.MaxConns = 2 }, nil)
	var held []*goldap.Conn
	for i := 0; i < 2; i++ {
		c, err := goldap.DialURL(r.url())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.WhoAmI(nil); err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	nc, err := net.Dial("tcp", r.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, _ := io.ReadAll(nc)
	p, err := readMessage(bufioReader(b), 1<<20, func() {})
	if err != nil {
		t.Fatalf("no notice over the cap: %v (% x)", err, b)
	}
	if code := p.Children[1].Children[0].Value.(int64); code != resultBusy {
		t.Errorf("over the cap: result %d, want busy (51)", code)
	}
	held[0].Close()
	// A place frees up once a held connection ends.
	var ok bool
	for i := 0; i < 100 && !ok; i++ {
		if c, err := goldap.DialURL(r.url()); err == nil {
			_, err = c.WhoAmI(nil)
			c.Close()
			ok = err == nil
		}
		if !ok {
			time.Sleep(20 * time.Millisecond)
		}
	}
	if !ok {
		t.Error("no connection accepted after one was freed")
	}
}

func TestRevokeClosesBoundConnection(t *testing.T) {
	r := newRig(t, nil, nil)
	alice := r.AddEnrolled(t, "alice", "classmate")
	c, err := goldap.DialURL(r.url())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Bind("alice", "classmate"+alice.Code(t)); err != nil {
		t.Fatal(err)
	}
	if err := r.Store.BumpEpoch(context.Background(), "alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Verifier.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !c.IsClosing() && time.Now().Before(deadline) {
		c.WhoAmI(nil)
		time.Sleep(10 * time.Millisecond)
	}
	if !c.IsClosing() {
		t.Fatal("the connection of a revoked session stays open")
	}
}

// TestPlainBindFromAfarNeedsTLS: a simple bind in clear from a client
// that is not on this machine gets confidentialityRequired, the password
// is never checked, and the refusal is audited once.
func TestPlainBindFromAfarNeedsTLS(t *testing.T) {
	r := newRig(t, nil, testenv.NewPKI(t).Server)
	alice := r.AddEnrolled(t, "alice", "classmate")
	client, server := net.Pipe() // its address is "pipe": not loopback
	defer client.Close()
	go newConn(r.srv, server, false).serve(context.Background())
	c := goldap.NewConn(client, false)
	c.Start()
	defer c.Close()
	err := c.Bind("uid=alice,ou=people,"+base, "classmate"+alice.Code(t))
	if !goldap.IsErrorWithCode(err, 13) {
		t.Fatalf("clear-text bind from afar: %v, want confidentialityRequired (13)", err)
	}
	// One audit event says so; no password was checked, so no other.
	if ev := r.AuditLog(); strings.Count(ev, "\n") != 1 ||
		!strings.Contains(ev, `"user":"alice","remote":"pipe","tls":false,"result":"deny","reason":"plaintext_refused"`) {
		t.Errorf("audit log of a bind refused for want of TLS, want one plaintext_refused event:\n%s", ev)
	}
}
