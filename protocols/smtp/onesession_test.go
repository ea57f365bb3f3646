package smtp_test

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	goldap "github.com/go-ldap/ldap/v3"

	"github.com/stepgate/stepgate/internal/testenv"
	"github.com/stepgate/stepgate/internal/testenv/dovecot"
	"github.com/stepgate/stepgate/internal/testenv/postfix"
	"github.com/stepgate/stepgate/internal/verifier/verifiertest"
	"github.com/stepgate/stepgate/protocols/imap"
	"github.com/stepgate/stepgate/protocols/ldap"
	"github.com/stepgate/stepgate/protocols/pop3"
	"github.com/stepgate/stepgate/protocols/smtp"
)

// line is a raw client of one front end.
type line struct {
	t  *testing.T
	nc net.Conn
	br *bufio.Reader
}

func dialLine(t *testing.T, addr string) *line {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(30 * time.Second))
	l := &line{t: t, nc: nc, br: bufio.NewReader(nc)}
	l.read() // the greeting
	return l
}

func (l *line) send(s string) { l.nc.Write([]byte(s + "\r\n")) }

func (l *line) read() string {
	l.t.Helper()
	s, err := l.br.ReadString('\n')
	if err != nil {
		l.t.Fatalf("reading: %v", err)
	}
	return strings.TrimRight(s, "\r\n")
}

// closed reports whether the server ends the connection within 10 s.
func (l *line) closed() bool {
	l.nc.SetDeadline(time.Now().Add(10 * time.Second))
	_, err := io.Copy(io.Discard, l.br)
	return !errors.Is(err, os.ErrDeadlineExceeded)
}

// TestOneSessionAcrossProtocols: a string signed in with a fresh code on
// IMAP is one session for the whole account: after the code has rolled
// over, POP3, SMTP submission and LDAP take it as a session hit; revoking
// the session closes the live connections of every protocol.
func TestOneSessionAcrossProtocols(t *testing.T) {
	dc := dovecot.Start(t, dovecot.Options{Users: map[string]string{"alice": "classmate", "bob": "bobsecret"}, POP3: true, AuthSocket: true})
	pf := postfix.Start(t, postfix.Options{AuthSocket: dc.AuthSocket(), Users: []string{"alice", "bob"}})
	e := verifiertest.New(t, verifiertest.Options{Clock: verifiertest.NewClock(time.Now())})
	alice := e.AddEnrolled(t, "alice", "classmate") // LDAP checks the password itself
	v := e.Verifier
	timeout := 60 * time.Second
	im, err := imap.New(imap.Options{Config: imap.Config{Listen: "127.0.0.1:0", PreLoginTimeout: timeout, MaxConns: 64, LoginFormat: "%Ln"},
		Upstream: imap.Upstream{Addr: dc.Addr()}, Verifier: v})
	if err != nil {
		t.Fatal(err)
	}
	po, err := pop3.New(pop3.Options{Config: pop3.Config{Listen: "127.0.0.1:0", PreLoginTimeout: timeout, MaxConns: 64, LoginFormat: "%Ln"},
		Upstream: pop3.Upstream{Addr: dc.POP3Addr()}, Verifier: v})
	if err != nil {
		t.Fatal(err)
	}
	sm, err := smtp.New(smtp.Options{Config: smtp.Config{Listen: "127.0.0.1:0", PreLoginTimeout: timeout, MaxConns: 64, LoginFormat: "%Ln"},
		Upstream: smtp.Upstream{Addr: pf.Addr()}, Verifier: v})
	if err != nil {
		t.Fatal(err)
	}
	ld, err := ldap.New(ldap.Options{Config: ldap.Config{Listen: "127.0.0.1:0", BaseDN: "dc=example,dc=org", ReadTimeout: timeout,
		IdleTimeout: timeout, MaxMessageBytes: 1 << 20, MaxConns: 64}, Verifier: v, Store: e.Store})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []testenv.Server{im, po, sm, ld} {
		testenv.Serve(t, s)
	}
	stored := "classmate" + alice.Code(t)

	i := dialLine(t, im.Addr())
	i.send(`a1 LOGIN alice "` + stored + `"`)
	if l := i.read(); !strings.HasPrefix(l, "a1 OK") {
		t.Fatalf("IMAP LOGIN with a fresh code: %q", l)
	}
	// The code is stale from here: only the session lets the string in.
	e.Clock.Advance(10 * time.Minute)

	p := dialLine(t, po.Addr())
	p.send("USER alice")
	p.read()
	p.send("PASS " + stored)
	if l := p.read(); !strings.HasPrefix(l, "+OK") {
		t.Fatalf("POP3 with the string signed in on IMAP: %q", l)
	}
	s := dialLine(t, sm.Addr())
	s.send("EHLO client.example.org")
	for l := s.read(); strings.HasPrefix(l, "250-"); l = s.read() {
	}
	s.send("AUTH PLAIN " + base64.StdEncoding.EncodeToString([]byte("\x00alice\x00"+stored)))
	if l := s.read(); !strings.HasPrefix(l, "235") {
		t.Fatalf("SMTP with the string signed in on IMAP: %q", l)
	}
	lc, err := goldap.DialURL("ldap://" + ld.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer lc.Close()
	if err := lc.Bind("uid=alice,ou=people,dc=example,dc=org", stored); err != nil {
		t.Fatalf("LDAP bind with the string signed in on IMAP: %v", err)
	}

	var reasons []string
	for _, l := range strings.Split(strings.TrimSpace(e.AuditLog()), "\n") {
		ev := map[string]any{}
		json.Unmarshal([]byte(l), &ev)
		if ev["msg"] == "decision" {
			reasons = append(reasons, ev["protocol"].(string)+":"+ev["reason"].(string))
		}
	}
	if want := "imap:code pop3:session smtp:session ldap:session"; strings.Join(reasons, " ") != want {
		t.Errorf("decisions %q, want %q", reasons, want)
	}

	if err := e.Store.BumpEpoch(context.Background(), "alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]*line{"IMAP": i, "POP3": p, "SMTP": s} {
		if !c.closed() {
			t.Errorf("revoking the session left the %s connection open", name)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for !lc.IsClosing() {
		lc.WhoAmI(nil) // lets the client notice a closed connection
		if time.Now().After(deadline) {
			t.Fatal("revoking the session left the LDAP connection open")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
