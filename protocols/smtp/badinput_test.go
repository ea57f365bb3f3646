package smtp

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stepgate/stepgate/internal/listener"
	"github.com/stepgate/stepgate/internal/relay/relaytest"
	"github.com/stepgate/stepgate/internal/testenv"
)

// TestSTARTTLSAndSubmissions: curl sends over STARTTLS and over implicit
// TLS (port 465 style); the mail arrives.
func TestSTARTTLSAndSubmissions(t *testing.T) {
	pki := testenv.NewPKI(t)
	pf := mailServer(t)
	r := newRigFor(t, pf, Upstream{Addr: pf.Addr()}, pki.Server, func(c *Config) { c.SubmissionsListen = "127.0.0.1:0" })
	alice := r.AddEnrolled(t, "alice", "x")
	stored := "classmate" + alice.Code(t)
	msgFile := filepath.Join(t.TempDir(), "msg")
	_, port, _ := net.SplitHostPort(r.Addr)
	_, sport, _ := net.SplitHostPort(r.srv.SubmissionsAddr())
	for n, url := range map[int]string{1: "smtp://localhost:" + port, 2: "smtps://localhost:" + sport} {
		os.WriteFile(msgFile, message(n), 0o644)
		if rc, out := relaytest.Curl(t, "alice", stored, url, "--ssl-reqd", "--cacert", pki.CAFile,
			"--mail-from", "alice@example.org", "--mail-rcpt", "bob@example.org", "-T", msgFile); rc != 0 {
			t.Fatalf("curl %s: exit %d: %s", url, rc, out)
		}
		wantSame(t, r.arrived(t, "bob", n), message(n))
	}
}

// TestSTARTTLSInjectionDiscarded: commands sent in the same packet as
// STARTTLS are not run after the handshake (CVE-2011-0411).
func TestSTARTTLSInjectionDiscarded(t *testing.T) {
	pki := testenv.NewPKI(t)
	r := newRigFor(t, nil, Upstream{Addr: "127.0.0.1:1", Timeout: time.Second}, pki.Server, nil)
	nc, err := net.Dial("tcp", r.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(nc)
	br.ReadString('\n')
	nc.Write([]byte("EHLO x\r\n"))
	for l, _ := br.ReadString('\n'); strings.HasPrefix(l, "250-"); l, _ = br.ReadString('\n') {
	}
	nc.Write([]byte("STARTTLS\r\nMAIL FROM:<evil@example.org>\r\n"))
	if l, _ := br.ReadString('\n'); !strings.HasPrefix(l, "220 ") {
		t.Fatalf("STARTTLS: %q", l)
	}
	tc := tls.Client(nc, pki.Client)
	if err := tc.Handshake(); err != nil {
		t.Fatalf("handshake after an injected command: %v", err)
	}
	tc.Write([]byte("NOOP\r\n"))
	tb := bufio.NewReader(tc)
	if l, _ := tb.ReadString('\n'); l != "250 2.0.0 OK\r\n" {
		t.Fatalf("first answer over TLS %q: the injected MAIL was run", l)
	}
	if !strings.Contains(r.Logs.String(), "data sent with STARTTLS discarded") {
		t.Errorf("no log line for the injection:\n%s", r.Logs)
	}
}

// TestBadInputEndsOnlyItsConnection: each broken client is hung up on
// with a log line, and a good client still sends after them.
func TestBadInputEndsOnlyItsConnection(t *testing.T) {
	r := newRig(t)
	alice := r.AddEnrolled(t, "alice", "x")
	stored := "classmate" + alice.Code(t)
	noise := make([]byte, 64<<10)
	rand.Read(noise)
	for _, c := range []struct {
		name, log string
		send      []byte
	}{
		{"endless line", "command over the limit", []byte(strings.Repeat("x", 1<<20))},
		{"8 MiB AUTH", "command over the limit", []byte("EHLO x\r\nAUTH PLAIN " + strings.Repeat("A", 8<<20) + "\r\n")},
		{"8 MiB AUTH by continuation", "bad SASL response", []byte("EHLO x\r\nAUTH LOGIN\r\n" + strings.Repeat("A", 8<<20) + "\r\n")},
		{"pipelined commands before AUTH", "too many failures", []byte("EHLO x\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\nSubject: x\r\n\r\nhi\r\n.\r\n")},
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
	if strings.Contains(r.pf.Log(), "evil") || strings.Contains(r.pf.Log(), "a@example.org") {
		t.Errorf("a command sent before AUTH reached Postfix:\n%s", r.pf.Log())
	}
	msgFile := filepath.Join(t.TempDir(), "msg")
	os.WriteFile(msgFile, message(1), 0o644)
	if rc, out := relaytest.Curl(t, "alice", stored, "smtp://"+r.Addr, "--mail-from", "alice@example.org",
		"--mail-rcpt", "bob@example.org", "-T", msgFile); rc != 0 {
		t.Fatalf("a good client after the bad ones: exit %d: %s", rc, out)
	}
}

// FuzzPreLogin feeds bytes to the pre-AUTH dialogue of one connection:
// it must answer or hang up, never panic or hang.
func FuzzPreLogin(f *testing.F) {
	for _, s := range []string{
		"EHLO x\r\nQUIT\r\n",
		"EHLO x\r\nAUTH PLAIN AGFsaWNlAGNsYXNzbWF0ZTEyMzQ1Ng==\r\n",
		"EHLO x\r\nAUTH LOGIN\r\nYWxpY2U=\r\nY2xhc3NtYXRlMTIzNDU2\r\n",
		"HELO x\r\nAUTH PLAIN\r\n*\r\nRSET\r\nNOOP\r\n",
		"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n",
		"XCLIENT ADDR=IPV6:2001:db8::1 PORT=1\r\nSTARTTLS\r\n",
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
			serve(r.srv)(context.Background(), listener.Conn{Raw: server, Net: server})
		})
	})
}
