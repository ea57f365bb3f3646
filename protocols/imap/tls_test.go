package imap

import (
	"net"
	"strings"
	"testing"

	"github.com/stepgate/stepgate/internal/relay/relaytest"
	"github.com/stepgate/stepgate/internal/testenv"
	"github.com/stepgate/stepgate/internal/testenv/dovecot"
)

func TestSTARTTLSAndIMAPS(t *testing.T) {
	pki := testenv.NewPKI(t)
	dc := dovecot.Start(t, dovecot.Options{Users: map[string]string{"alice": "classmate"}})
	r := newRigFor(t, dc, Upstream{Addr: dc.Addr(), TLS: "none"}, pki.Server, func(c *Config) { c.IMAPSListen = "127.0.0.1:0" })
	dc.Deliver("alice", dovecot.Message(1, 300))
	alice := r.AddEnrolled(t, "alice", "x")
	stored := "classmate" + alice.Code(t)
	_, port, _ := net.SplitHostPort(r.Addr)
	if rc, out := relaytest.Curl(t, "alice", stored, "imap://localhost:"+port+"/INBOX?ALL", "--ssl-reqd", "--cacert", pki.CAFile); rc != 0 || !strings.Contains(out, "SEARCH 1") {
		t.Fatalf("curl with STARTTLS: exit %d: %s", rc, out)
	}
	_, sport, _ := net.SplitHostPort(r.srv.IMAPSAddr())
	if rc, out := relaytest.Curl(t, "alice", stored, "imaps://localhost:"+sport+"/INBOX?ALL", "--cacert", pki.CAFile); rc != 0 || !strings.Contains(out, "SEARCH 1") {
		t.Fatalf("curl over imaps: exit %d: %s", rc, out)
	}
}

// TestLoginDisabledWithoutTLSFromAfar: a client that is neither on this
// machine nor on TLS is told LOGINDISABLED and cannot send a password.
func TestLoginDisabledWithoutTLSFromAfar(t *testing.T) {
	e := newRigFor(t, nil, Upstream{Addr: "127.0.0.1:1"}, testenv.NewPKI(t).Server, nil)
	c := relaytest.FromAfar(t, serve(e.srv))
	greeting := c.Line()
	if !strings.Contains(greeting, "LOGINDISABLED") || strings.Contains(greeting, "AUTH=PLAIN") || !strings.Contains(greeting, "STARTTLS") {
		t.Fatalf("greeting from afar without TLS: %q", greeting)
	}
	c.Send("a1 LOGIN alice secret123456")
	if l := c.Line(); !strings.HasPrefix(l, "a1 NO [PRIVACYREQUIRED]") {
		t.Fatalf("LOGIN from afar without TLS: %q", l)
	}
}

// TestMasterUserLogin: with a master user, stepgate checks the password
// itself and logs in upstream on the user's behalf.
func TestMasterUserLogin(t *testing.T) {
	dc := dovecot.Start(t, dovecot.Options{Users: map[string]string{"alice": "dovecot-only-password"},
		MasterUser: "stepgate", MasterPassword: "master-secret"})
	r := newRigFor(t, dc, Upstream{Addr: dc.Addr(), TLS: "none", MasterUser: "stepgate", MasterPassword: "master-secret"}, nil, nil)
	dc.Deliver("alice", dovecot.Message(1, 300))
	alice := r.AddEnrolled(t, "alice", "local-password")
	code := alice.Code(t)
	if rc, _ := relaytest.Curl(t, "alice", "dovecot-only-password"+code, "imap://"+r.Addr+"/INBOX?ALL"); rc != 67 {
		t.Fatalf("the mail server's password instead of stepgate's: exit %d, want 67", rc)
	}
	if rc, out := relaytest.Curl(t, "alice", "local-password"+code, "imap://"+r.Addr+"/INBOX?ALL"); rc != 0 || !strings.Contains(out, "SEARCH 1") {
		t.Fatalf("master-user login: exit %d: %s", rc, out)
	}
}
