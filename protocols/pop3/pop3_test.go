package pop3

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stepgate/stepgate/internal/listener"
	"github.com/stepgate/stepgate/internal/relay/relaytest"
	"github.com/stepgate/stepgate/internal/testenv"
	"github.com/stepgate/stepgate/internal/testenv/dovecot"
	"github.com/stepgate/stepgate/internal/verifier"
	"github.com/stepgate/stepgate/internal/verifier/verifiertest"
)

// rig is stepgate's POP3 front end over a real verifier, in front of a
// real Dovecot POP3.
type rig struct {
	*relaytest.Rig
	dc  *dovecot.Server
	srv *Server
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func newRig(t testing.TB, users map[string]string) *rig {
	t.Helper()
	dc := dovecot.Start(t, dovecot.Options{Users: users, POP3: true})
	return newRigFor(t, dc, Upstream{Addr: dc.POP3Addr(), TLS: "none"}, nil, nil)
}

func newRigFor(t testing.TB, dc *dovecot.Server, up Upstream, tlsCfg *tls.Config, mod func(*Config)) *rig {
	t.Helper()
	// config.Default's values, on a free port.
	cfg := Config{Listen: "127.0.0.1:0", PreLoginTimeout: 60 * time.Second, MaxConns: 4096, LoginFormat: "%Ln"}
	if mod != nil {
		mod(&cfg)
	}
	r := &rig{dc: dc}
	r.Rig = relaytest.Start(t, verifiertest.Options{}, func(v *verifier.Verifier, log *slog.Logger) (relaytest.FrontEnd, error) {
		srv, err := New(Options{Config: cfg, Upstream: up, TLS: tlsCfg, Verifier: v, Log: log})
		r.srv = srv
		return srv, err
	})
	return r
}

func serve(s *Server) func(context.Context, listener.Conn) { return s.Relay().Serve }

func TestCurlListsAndRetrieves(t *testing.T) {
	r := newRig(t, map[string]string{"alice": "classmate", "bob": "bobsecret"})
	r.dc.Deliver("alice", dovecot.Message(1, 2000))
	alice := r.AddEnrolled(t, "alice", "unused-local-password")
	r.AddEnrolled(t, "bob", "unused-local-password")
	code := alice.Code(t)
	url := "pop3://" + r.Addr + "/"
	for _, c := range []struct{ name, user, secret string }{
		{"wrong code", "alice", "classmate" + relaytest.WrongCode(code)},
		{"wrong password", "alice", "classmatf" + code},
		{"unknown user", "nobody", "classmate" + code},
		{"no code", "alice", "classmate"},
	} {
		if rc, out := relaytest.Curl(t, c.user, c.secret, url); rc != 67 {
			t.Errorf("%s: curl exit %d, want 67: %s", c.name, rc, out)
		}
	}
	stored := "classmate" + code
	if rc, out := relaytest.Curl(t, "alice", stored, url); rc != 0 || !strings.HasPrefix(out, "1 ") {
		t.Fatalf("LIST with password+code: exit %d: %s", rc, out)
	}
	// The stored string keeps working once the code has rolled over: a
	// session.
	r.Clock.Advance(10 * time.Minute)
	if rc, out := relaytest.Curl(t, "alice", stored, url+"1"); rc != 0 || !strings.Contains(out, "Subject: message 1") {
		t.Fatalf("RETR with the stored string: exit %d: %s", rc, out)
	}
	if logs := r.Logs.String(); strings.Contains(logs, "classmate") || strings.Contains(logs, code) {
		t.Error("a password or code reached stepgate's log")
	}
}

// retr runs poplib's RETR n against addr and returns the message bytes.
func retr(t *testing.T, addr, user, secret string, n int, mech string) []byte {
	t.Helper()
	py := testenv.NeedProgram(t, "python3")
	host, port, _ := net.SplitHostPort(addr)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, py, "testdata/poplib_retr.py", host, port, user, secret, fmt.Sprint(n), mech).CombinedOutput()
	if err != nil {
		t.Fatalf("poplib via %s: %v\n%s", addr, err, out)
	}
	b, err := hex.DecodeString(string(out))
	if err != nil {
		t.Fatalf("poplib output: %v", err)
	}
	return b
}

// TestPoplibRETREqualsDirect: RETR through stepgate (USER/PASS and AUTH
// PLAIN) is byte for byte RETR straight from Dovecot.
func TestPoplibRETREqualsDirect(t *testing.T) {
	r := newRig(t, map[string]string{"alice": "classmate"})
	for i := 1; i <= 3; i++ {
		r.dc.Deliver("alice", dovecot.Message(i, 20000*i))
	}
	alice := r.AddEnrolled(t, "alice", "x")
	stored := "classmate" + alice.Code(t)
	for n := 1; n <= 3; n++ {
		direct := retr(t, r.dc.POP3Addr(), "alice", "classmate", n, "user")
		if len(direct) < 20000*n-100 {
			t.Fatalf("direct RETR %d: only %d bytes", n, len(direct))
		}
		for _, mech := range []string{"user", "plain"} {
			if got := retr(t, r.Addr, "alice", stored, n, mech); string(got) != string(direct) {
				t.Errorf("RETR %d through stepgate (%s): %d bytes differ from the direct %d", n, mech, len(got), len(direct))
			}
		}
	}
}

// TestFetchmail: fetchmail collects the mailbox through stepgate.
func TestFetchmail(t *testing.T) {
	fm := testenv.NeedProgram(t, "fetchmail")
	r := newRig(t, map[string]string{"alice": "classmate"})
	r.dc.Deliver("alice", dovecot.Message(1, 3000))
	r.dc.Deliver("alice", dovecot.Message(2, 4000))
	alice := r.AddEnrolled(t, "alice", "x")
	dir := t.TempDir()
	host, port, _ := net.SplitHostPort(r.Addr)
	rc := filepath.Join(dir, "fetchmailrc")
	out := filepath.Join(dir, "out")
	conf := fmt.Sprintf("poll %s protocol pop3 port %s user \"alice\" password \"%s\" sslproto '' keep mda \"cat >> %s\"\n",
		host, port, "classmate"+alice.Code(t), out)
	if err := os.WriteFile(rc, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, fm, "-f", rc, "-v", "--nosyslog", "--pidfile", filepath.Join(dir, "pid"))
	cmd.Env = append(os.Environ(), "HOME="+dir, "FETCHMAILHOME="+dir)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("fetchmail: %v\n%s", err, b)
	}
	got, _ := os.ReadFile(out)
	if !strings.Contains(string(got), "Subject: message 1") || !strings.Contains(string(got), "Subject: message 2") {
		t.Fatalf("fetchmail delivered %d bytes without both messages", len(got))
	}
}

func dial(t *testing.T, r *rig) *relaytest.Client {
	t.Helper()
	c := r.Dial(t)
	if g := c.Line(); !strings.HasPrefix(g, "+OK") {
		t.Fatalf("greeting %q", g)
	}
	return c
}

func capa(t *testing.T, c *relaytest.Client) []string {
	t.Helper()
	c.Send("CAPA")
	if l := c.Line(); !strings.HasPrefix(l, "+OK") {
		t.Fatalf("CAPA: %q", l)
	}
	var caps []string
	for l := c.Line(); l != "."; l = c.Line() {
		caps = append(caps, l)
	}
	return caps
}

// TestDialogue: CAPA, APOP refused, AUTH PLAIN by continuation, RFC 3206
// codes for failures, and the mail server's own session after login.
func TestDialogue(t *testing.T) {
	r := newRig(t, map[string]string{"alice": "classmate"})
	r.dc.Deliver("alice", dovecot.Message(1, 300))
	alice := r.AddEnrolled(t, "alice", "x")
	code := alice.Code(t)
	c := dial(t, r)
	caps := strings.Join(capa(t, c), "|")
	if !strings.Contains(caps, "USER") || !strings.Contains(caps, "SASL PLAIN") || !strings.Contains(caps, "RESP-CODES") {
		t.Errorf("CAPA %q", caps)
	}
	c.Send("APOP alice 0123456789abcdef0123456789abcdef")
	if l := c.Line(); !strings.HasPrefix(l, "-ERR") {
		t.Errorf("APOP: %q", l)
	}
	c.Send("USER alice")
	c.Line()
	c.Send("PASS classmate" + relaytest.WrongCode(code))
	if l := c.Line(); !strings.HasPrefix(l, "-ERR [AUTH] ") {
		t.Errorf("wrong code: %q", l)
	}
	c.Send("AUTH PLAIN")
	if l := c.Line(); l != "+ " {
		t.Fatalf("AUTH PLAIN without a response: %q", l)
	}
	c.Send(b64("\x00alice\x00classmate" + code))
	if l := c.Line(); !strings.HasPrefix(l, "+OK") {
		t.Fatalf("AUTH PLAIN by continuation: %q", l)
	}
	c.Send("STAT")
	if l := c.Line(); !strings.HasPrefix(l, "+OK 1 ") {
		t.Errorf("STAT after login (Dovecot's answer): %q", l)
	}
	c.Send("QUIT")
	if l := c.Line(); !strings.HasPrefix(l, "+OK") {
		t.Errorf("QUIT: %q", l)
	}
}

// TestUpstreamDownIsTemporary: a mail server that is down gives
// -ERR [SYS/TEMP], which clients take as "try later", not "wrong
// password".
func TestUpstreamDownIsTemporary(t *testing.T) {
	r := newRigFor(t, nil, Upstream{Addr: "127.0.0.1:1", Timeout: time.Second}, nil, nil)
	alice := r.AddEnrolled(t, "alice", "x")
	c := dial(t, r)
	c.Send("USER alice")
	c.Line()
	c.Send("PASS classmate" + alice.Code(t))
	if l := c.Line(); !strings.HasPrefix(l, "-ERR [SYS/TEMP] ") {
		t.Fatalf("upstream down: %q", l)
	}
	if rc, out := relaytest.Curl(t, "alice", "classmate"+alice.Code(t), "pop3://"+r.Addr+"/"); rc == 0 {
		t.Fatalf("curl with the mail server down: exit 0: %s", out)
	}
}

// TestXCLIENTForwardsTheClient: a trusted front names the real client;
// stepgate tells Dovecot with XCLIENT, and Dovecot logs that address.
func TestXCLIENTForwardsTheClient(t *testing.T) {
	dc := dovecot.Start(t, dovecot.Options{Users: map[string]string{"alice": "classmate"}, POP3: true})
	r := newRigFor(t, dc, Upstream{Addr: dc.POP3Addr()}, nil, func(c *Config) {
		c.TrustedNetworks = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	})
	alice := r.AddEnrolled(t, "alice", "x")
	c := dial(t, r)
	c.Send("XCLIENT ADDR=192.0.2.7 PORT=40001")
	if l := c.Line(); !strings.HasPrefix(l, "+OK") {
		t.Fatalf("XCLIENT from a trusted front: %q", l)
	}
	c.Send("USER alice")
	c.Line()
	c.Send("PASS classmate" + alice.Code(t))
	if l := c.Line(); !strings.HasPrefix(l, "+OK") {
		t.Fatalf("PASS: %q", l)
	}
	c.Send("QUIT")
	c.Line()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(dc.Log(), "rip=192.0.2.7") {
		if time.Now().After(deadline) {
			t.Fatalf("Dovecot did not log the forwarded client address:\n%s", dc.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if ev := r.Events(t); len(ev) == 0 || ev[len(ev)-1]["remote"] != "192.0.2.7" {
		t.Errorf("audit event does not name the forwarded client: %v", ev)
	}
}

func listenerConn(nc net.Conn) listener.Conn { return listener.Conn{Raw: nc, Net: nc} }
