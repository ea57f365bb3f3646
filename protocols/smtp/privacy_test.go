package smtp

import (
	"strings"
	"testing"

	"github.com/stepgate/stepgate/internal/relay/relaytest"
)

// TestPlainTextFromAfarIsRefused: AUTH PLAIN and AUTH LOGIN in clear from
// a client that is not on this machine are refused with 538 before any
// secret is read, and each is audited once as plaintext_refused.
func TestPlainTextFromAfarIsRefused(t *testing.T) {
	r := newRigFor(t, nil, Upstream{Addr: "127.0.0.1:1"}, nil, nil)
	c := relaytest.FromAfar(t, serve(r.srv))
	if g := c.Line(); !strings.HasPrefix(g, "220 ") {
		t.Fatalf("greeting %q", g)
	}
	c.Send("EHLO client.example.org")
	for l := c.Line(); !strings.HasPrefix(l, "250 "); l = c.Line() {
		if !strings.HasPrefix(l, "250-") {
			t.Fatalf("EHLO: %q", l)
		}
	}
	for i, cmd := range []string{"AUTH PLAIN " + b64("\x00alice\x00secret-password123456"), "AUTH LOGIN"} {
		c.Send(cmd)
		if l := c.Line(); !strings.HasPrefix(l, "538 5.7.11") {
			t.Fatalf("%s from afar without TLS: %q", cmd, l)
		}
		r.WantOneRefusal(t, i, "smtp", "plaintext_refused", "")
	}
	if strings.Contains(r.AuditLog(), "secret-password") {
		t.Error("the audit log holds the password")
	}
}
