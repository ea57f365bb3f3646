package pop3

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stepgate/stepgate/internal/relay/relaytest"
	"github.com/stepgate/stepgate/internal/testenv"
	"github.com/stepgate/stepgate/internal/testenv/dovecot"
)

// TestSTLSAndPOP3S: curl signs in over STLS and over pop3s.
func TestSTLSAndPOP3S(t *testing.T) {
	pki := testenv.NewPKI(t)
	dc := dovecot.Start(t, dovecot.Options{Users: map[string]string{"alice": "classmate"}, POP3: true})
	r := newRigFor(t, dc, Upstream{Addr: dc.POP3Addr()}, pki.Server, func(c *Config) { c.POP3SListen = "127.0.0.1:0" })
	dc.Deliver("alice", dovecot.Message(1, 300))
	alice := r.AddEnrolled(t, "alice", "x")
	stored := "classmate" + alice.Code(t)
	_, port, _ := net.SplitHostPort(r.Addr)
	if rc, out := relaytest.Curl(t, "alice", stored, "pop3://localhost:"+port+"/1", "--ssl-reqd", "--cacert", pki.CAFile); rc != 0 || !strings.Contains(out, "Subject: message 1") {
		t.Fatalf("curl with STLS: exit %d: %s", rc, out)
	}
	_, sport, _ := net.SplitHostPort(r.srv.POP3SAddr())
	if rc, out := relaytest.Curl(t, "alice", stored, "pop3s://localhost:"+sport+"/1", "--cacert", pki.CAFile); rc != 0 || !strings.Contains(out, "Subject: message 1") {
		t.Fatalf("curl over pop3s: exit %d: %s", rc, out)
	}
}

// TestSTLSInjectionDiscarded: commands sent in the same packet as STLS
// are not run after the handshake (CVE-2011-0411).
func TestSTLSInjectionDiscarded(t *testing.T) {
	pki := testenv.NewPKI(t)
	r := newRigFor(t, nil, Upstream{Addr: "127.0.0.1:1"}, pki.Server, nil)
	nc, err := net.Dial("tcp", r.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(nc)
	br.ReadString('\n')
	nc.Write([]byte("STLS\r\nCAPA\r\n"))
	if l, _ := br.ReadString('\n'); !strings.HasPrefix(l, "+OK") {
		t.Fatalf("STLS: %q", l)
	}
	tc := tls.Client(nc, pki.Client)
	if err := tc.Handshake(); err != nil {
		t.Fatalf("handshake after an injected command: %v", err)
	}
	tc.Write([]byte("NOOP\r\n"))
	tb := bufio.NewReader(tc)
	if l, _ := tb.ReadString('\n'); l != "+OK\r\n" {
		t.Fatalf("first answer over TLS %q: the injected CAPA was run", l)
	}
	if !strings.Contains(r.Logs.String(), "data sent with STLS discarded") {
		t.Errorf("no log line for the injection:\n%s", r.Logs)
	}
}

// TestBadInputEndsOnlyItsConnection: each broken client is hung up on
// with a log line, and a good client still signs in after them.
func TestBadInputEndsOnlyItsConnection(t *testing.T) {
	r := newRig(t, map[string]string{"alice": "classmate"})
	alice := r.AddEnrolled(t, "alice", "x")
	stored := "classmate" + alice.Code(t)
	noise := make([]byte, 64<<10)
	rand.Read(noise)
	for _, c := range []struct {
		name, log string
		send      []byte
	}{
		{"endless line", "command over the limit", []byte(strings.Repeat("x", 1<<20))},
		{"8 MiB AUTH", "command over the limit", []byte("AUTH PLAIN " + strings.Repeat("A", 8<<20) + "\r\n")},
		{"8 MiB AUTH by continuation", "bad SASL response", []byte("AUTH PLAIN\r\n" + strings.Repeat("A", 8<<20) + "\r\n")},
		{"pipelined commands before login", "too many", []byte("STAT\r\nLIST\r\nRETR 1\r\nDELE 1\r\n")},
		{"random bytes", "connection closed", noise},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := strings.Count(r.Logs.String(), c.log)
			nc, err := net.Dial("tcp", r.Addr)
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			nc.SetDeadline(time.Now().Add(20 * time.Second))
			go nc.Write(c.send)
			// EOF or a reset (the server closed with bytes unread) both
			// end it; only the deadline means it stayed open.
			if _, err := io.Copy(io.Discard, nc); errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("the connection was not closed: %v", err)
			}
			deadline := time.Now().Add(5 * time.Second)
			for strings.Count(r.Logs.String(), c.log) == before {
				if time.Now().After(deadline) {
					t.Fatalf("no %q log line:\n%s", c.log, r.Logs)
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
	if rc, out := relaytest.Curl(t, "alice", stored, "pop3://"+r.Addr+"/"); rc != 0 {
		t.Fatalf("a good client after the bad ones: exit %d: %s", rc, out)
	}
}

// FuzzPreLogin feeds bytes to the pre-login dialogue of one connection:
// it must answer or hang up, never panic or hang.
func FuzzPreLogin(f *testing.F) {
	for _, s := range []string{
		"CAPA\r\nQUIT\r\n",
		"USER alice\r\nPASS classmate123456\r\n",
		"AUTH PLAIN AGFsaWNlAGNsYXNzbWF0ZTEyMzQ1Ng==\r\n",
		"AUTH PLAIN\r\n*\r\n",
		"AUTH\r\nAPOP alice 0123\r\nPASS x\r\n",
		"XCLIENT ADDR=192.0.2.1 PORT=1\r\nSTLS\r\n",
	} {
		f.Add([]byte(s))
	}
	r := newRigFor(f, nil, Upstream{Addr: "127.0.0.1:1", Timeout: 100 * time.Millisecond}, nil, func(c *Config) {
		c.PreLoginTimeout = 200 * time.Millisecond
	})
	r.AddEnrolled(f, "alice", "classmate")
	feed := testenv.NewFeeder(f)
	f.Fuzz(func(t *testing.T, in []byte) {
		feed.Feed(t, in, func(server net.Conn) {
			serve(r.srv)(context.Background(), listenerConn(server))
		})
	})
}
