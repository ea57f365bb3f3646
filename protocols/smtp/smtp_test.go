package smtp

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
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
	"github.com/stepgate/stepgate/internal/testenv/postfix"
	"github.com/stepgate/stepgate/internal/verifier"
	"github.com/stepgate/stepgate/internal/verifier/verifiertest"
)

// rig is stepgate's submission front end over a real verifier, in front
// of a real Postfix whose SASL is a real Dovecot's.
type rig struct {
	*relaytest.Rig
	pf  *postfix.Server
	srv *Server
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// mailServer starts Dovecot (the passwords) and Postfix (submission,
// delivery to bob's and alice's maildirs).
func mailServer(t testing.TB) *postfix.Server {
	t.Helper()
	dc := dovecot.Start(t, dovecot.Options{Users: map[string]string{"alice": "classmate", "bob": "bobsecret"}, AuthSocket: true})
	return postfix.Start(t, postfix.Options{AuthSocket: dc.AuthSocket(), Users: []string{"alice", "bob"}})
}

func newRig(t testing.TB) *rig {
	t.Helper()
	pf := mailServer(t)
	return newRigFor(t, pf, Upstream{Addr: pf.Addr()}, nil, nil)
}

func newRigFor(t testing.TB, pf *postfix.Server, up Upstream, tlsCfg *tls.Config, mod func(*Config)) *rig {
	t.Helper()
	cfg := Config{Listen: "127.0.0.1:0", PreLoginTimeout: 60 * time.Second, MaxConns: 4096, LoginFormat: "%Ln"}
	if mod != nil {
		mod(&cfg)
	}
	r := &rig{pf: pf}
	r.Rig = relaytest.Start(t, verifiertest.Options{}, func(v *verifier.Verifier, log *slog.Logger) (relaytest.FrontEnd, error) {
		srv, err := New(Options{Config: cfg, Upstream: up, TLS: tlsCfg, Verifier: v, Log: log})
		r.srv = srv
		return srv, err
	})
	return r
}

func serve(s *Server) func(context.Context, listener.Conn) { return s.Relay().Serve }

// message is a test message with CRLF line ends, unique by n.
func message(n int) []byte {
	return dovecot.Message(n, 10<<10)
}

// arrived waits for the message numbered n in user's maildir and returns
// the delivered file.
func (r *rig) arrived(t *testing.T, user string, n int) []byte {
	t.Helper()
	want := fmt.Sprintf("Message-ID: <%d@stepgate.test>", n)
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		files, _ := filepath.Glob(filepath.Join(r.pf.Maildir(user), "new", "*"))
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err == nil && bytes.Contains(b, []byte(want)) {
				return b
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("message %d did not arrive in %s's maildir:\n%s", n, user, r.pf.Log())
	return nil
}

// wantSame checks that delivered is sent with only headers added above
// it (Return-Path, Delivered-To, Received); a maildir holds LF line
// ends.
func wantSame(t *testing.T, delivered, sent []byte) {
	t.Helper()
	sent = bytes.ReplaceAll(sent, []byte("\r\n"), []byte("\n"))
	if !bytes.HasSuffix(delivered, sent) {
		t.Fatalf("the delivered message is not the sent one with headers added:\n%.600s\n...%q", delivered, delivered[max(0, len(delivered)-100):])
	}
	for _, h := range bytes.Split(delivered[:len(delivered)-len(sent)], []byte("\n")) {
		if len(h) > 0 && !bytes.HasPrefix(h, []byte("Return-Path:")) && !bytes.HasPrefix(h, []byte("Delivered-To:")) &&
			!bytes.HasPrefix(h, []byte("X-Original-To:")) &&
			!bytes.HasPrefix(h, []byte("Received:")) && h[0] != ' ' && h[0] != '\t' {
			t.Errorf("unexpected header added: %q", h)
		}
	}
}

func TestCurlSendsAndArrives(t *testing.T) {
	r := newRig(t)
	alice := r.AddEnrolled(t, "alice", "unused-local-password")
	code := alice.Code(t)
	msgFile := filepath.Join(t.TempDir(), "msg")
	send := func(n int, secret string) (int, string) {
		os.WriteFile(msgFile, message(n), 0o644)
		return relaytest.Curl(t, "alice", secret, "smtp://"+r.Addr+"/client.example.org",
			"--mail-from", "alice@example.org", "--mail-rcpt", "bob@example.org", "-T", msgFile)
	}
	for i, c := range []struct{ name, secret string }{
		{"wrong code", "classmate" + relaytest.WrongCode(code)},
		{"wrong password", "classmatf" + code},
		{"no code", "classmate"},
	} {
		if rc, out := send(100+i, c.secret); rc != 67 {
			t.Errorf("%s: curl exit %d, want 67: %s", c.name, rc, out)
		}
	}
	stored := "classmate" + code
	if rc, out := send(1, stored); rc != 0 {
		t.Fatalf("send with password+code: exit %d: %s", rc, out)
	}
	wantSame(t, r.arrived(t, "bob", 1), message(1))
	// The stored string keeps working after the code has rolled over.
	r.Clock.Advance(10 * time.Minute)
	if rc, out := send(2, stored); rc != 0 {
		t.Fatalf("send with the stored string: exit %d: %s", rc, out)
	}
	wantSame(t, r.arrived(t, "bob", 2), message(2))
	if logs := r.Logs.String(); strings.Contains(logs, "classmate") || strings.Contains(logs, code) {
		t.Error("a password or code reached stepgate's log")
	}
}

// TestClients: Python's smtplib (AUTH PLAIN), swaks (AUTH LOGIN) and
// msmtp send through stepgate; each message arrives unchanged.
func TestClients(t *testing.T) {
	r := newRig(t)
	alice := r.AddEnrolled(t, "alice", "x")
	stored := "classmate" + alice.Code(t)
	host, port, _ := net.SplitHostPort(r.Addr)
	dir := t.TempDir()
	run := func(name string, n int, cmd func(file string) *exec.Cmd) {
		t.Helper()
		file := filepath.Join(dir, fmt.Sprint(n))
		msg := message(n)
		if name == "swaks" {
			// swaks ends the data with CRLF of its own.
			msg = bytes.TrimSuffix(msg, []byte("\r\n"))
		}
		os.WriteFile(file, msg, 0o644)
		c := cmd(file)
		if out, err := c.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", name, err, out)
		}
		wantSame(t, r.arrived(t, "bob", n), message(n))
	}
	py := testenv.NeedProgram(t, "python3")
	run("smtplib", 1, func(file string) *exec.Cmd {
		return exec.Command(py, "testdata/smtplib_send.py", host, port, "alice", stored, "alice@example.org", "bob@example.org", file)
	})
	swaks := testenv.NeedProgram(t, "swaks")
	run("swaks", 2, func(file string) *exec.Cmd {
		return exec.Command(swaks, "--server", host, "--port", port, "--auth", "LOGIN", "--auth-user", "alice",
			"--auth-password", stored, "--from", "alice@example.org", "--to", "bob@example.org", "--data", file, "--helo", "client.example.org")
	})
	msmtp := testenv.NeedProgram(t, "msmtp")
	run("msmtp", 3, func(file string) *exec.Cmd {
		c := exec.Command(msmtp, "--host="+host, "--port="+port, "--auth=plain", "--user=alice", "--passwordeval=echo '"+stored+"'",
			"--tls=off", "--from=alice@example.org", "bob@example.org")
		f, _ := os.Open(file)
		t.Cleanup(func() { f.Close() })
		c.Stdin = f
		return c
	})
}

func dial(t *testing.T, r *rig) *relaytest.Client {
	t.Helper()
	c := r.Dial(t)
	if g := c.Line(); !strings.HasPrefix(g, "220 ") {
		t.Fatalf("greeting %q", g)
	}
	return c
}

// ehlo sends EHLO and returns the extension lines.
func ehlo(t *testing.T, c *relaytest.Client) []string {
	t.Helper()
	c.Send("EHLO client.example.org")
	var ext []string
	for {
		l := c.Line()
		if !strings.HasPrefix(l, "250") {
			t.Fatalf("EHLO: %q", l)
		}
		ext = append(ext, l[4:])
		if l[3] == ' ' {
			return ext[1:]
		}
	}
}

// TestEHLOPromisesOnlyWhatTheMailServerHas: the extensions stepgate
// offers before AUTH are the mail server's (SIZE with its limit), plus
// AUTH; nothing the mail server lacks.
func TestEHLOPromisesOnlyWhatTheMailServerHas(t *testing.T) {
	r := newRig(t)
	got := strings.Join(ehlo(t, dial(t, r)), "|")
	for _, want := range []string{"SIZE 10240000", "PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES", "CHUNKING", "SMTPUTF8", "AUTH PLAIN LOGIN"} {
		if !strings.Contains(got, want) {
			t.Errorf("EHLO %q lacks %q", got, want)
		}
	}
	for _, not := range []string{"DSN", "ETRN", "VRFY", "XCLIENT", "STARTTLS"} {
		if strings.Contains(got, not) {
			t.Errorf("EHLO %q offers %q", got, not)
		}
	}
	// A mail server without SIZE or CHUNKING: stepgate offers neither.
	down := newRigFor(t, nil, Upstream{Addr: "127.0.0.1:1", Timeout: time.Second}, nil, nil)
	got = strings.Join(ehlo(t, dial(t, down)), "|")
	if got != "AUTH PLAIN LOGIN" {
		t.Errorf("EHLO with the mail server never reached: %q", got)
	}
}

// TestDialogue: MAIL before AUTH, AUTH PLAIN by continuation, AUTH
// LOGIN, generic failures, RSET, NOOP, and the mail server's session
// after AUTH.
func TestDialogue(t *testing.T) {
	r := newRig(t)
	alice := r.AddEnrolled(t, "alice", "x")
	code := alice.Code(t)
	c := dial(t, r)
	ehlo(t, c)
	for _, cmd := range []string{"MAIL FROM:<alice@example.org>", "RSET", "NOOP"} {
		c.Send(cmd)
		want := "250 2.0.0"
		if strings.HasPrefix(cmd, "MAIL") {
			want = "530 5.7.0 Authentication required"
		}
		if l := c.Line(); !strings.HasPrefix(l, want) {
			t.Errorf("%s: %q, want %q", cmd, l, want)
		}
	}
	c.Send("AUTH LOGIN")
	if l := c.Line(); l != "334 VXNlcm5hbWU6" {
		t.Fatalf("AUTH LOGIN: %q", l)
	}
	c.Send(b64("alice"))
	if l := c.Line(); l != "334 UGFzc3dvcmQ6" {
		t.Fatalf("AUTH LOGIN user: %q", l)
	}
	c.Send(b64("classmate" + relaytest.WrongCode(code)))
	if l := c.Line(); l != authFailed {
		t.Errorf("wrong code: %q", l)
	}
	c.Send("AUTH PLAIN")
	if l := c.Line(); l != "334 " {
		t.Fatalf("AUTH PLAIN without a response: %q", l)
	}
	c.Send(b64("\x00alice\x00classmate" + code))
	if l := c.Line(); !strings.HasPrefix(l, "235 2.7.0") {
		t.Fatalf("AUTH PLAIN by continuation: %q", l)
	}
	c.Send("MAIL FROM:<alice@example.org>")
	if l := c.Line(); !strings.HasPrefix(l, "250 2.1.0") {
		t.Errorf("MAIL after AUTH (Postfix's answer): %q", l)
	}
	c.Send("QUIT")
	if l := c.Line(); !strings.HasPrefix(l, "221") {
		t.Errorf("QUIT: %q", l)
	}
}

// TestUpstreamDownIsTemporary: a mail server that is down gives 454
// 4.7.0, which clients take as "try later" and keep the password.
func TestUpstreamDownIsTemporary(t *testing.T) {
	r := newRigFor(t, nil, Upstream{Addr: "127.0.0.1:1", Timeout: time.Second}, nil, nil)
	alice := r.AddEnrolled(t, "alice", "x")
	c := dial(t, r)
	ehlo(t, c)
	c.Send("AUTH PLAIN " + b64("\x00alice\x00classmate"+alice.Code(t)))
	if l := c.Line(); l != authTempErr {
		t.Fatalf("upstream down: %q", l)
	}
}

// TestXCLIENTForwardsTheClient: a trusted front names the real client;
// stepgate tells Postfix with XCLIENT, and Postfix logs that address.
func TestXCLIENTForwardsTheClient(t *testing.T) {
	pf := mailServer(t)
	r := newRigFor(t, pf, Upstream{Addr: pf.Addr()}, nil, func(c *Config) {
		c.TrustedNetworks = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	})
	alice := r.AddEnrolled(t, "alice", "x")
	c := dial(t, r)
	c.Send("XCLIENT ADDR=192.0.2.7 PORT=40001")
	if l := c.Line(); !strings.HasPrefix(l, "220 ") {
		t.Fatalf("XCLIENT from a trusted front: %q", l)
	}
	ehlo(t, c)
	c.Send("AUTH PLAIN " + b64("\x00alice\x00classmate"+alice.Code(t)))
	if l := c.Line(); !strings.HasPrefix(l, "235") {
		t.Fatalf("AUTH: %q", l)
	}
	c.Send("QUIT")
	c.Line()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(pf.Log(), "[192.0.2.7]") {
		if time.Now().After(deadline) {
			t.Fatalf("Postfix did not log the forwarded client address:\n%s", pf.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
