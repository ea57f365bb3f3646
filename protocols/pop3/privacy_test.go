package pop3

import (
	"strings"
	"testing"

	"github.com/stepgate/stepgate/internal/relay/relaytest"
)

// TestPlainTextFromAfarIsRefused: USER and AUTH PLAIN in clear from a
// client that is not on this machine are refused before any secret is
// read, and each is audited once as plaintext_refused.
func TestPlainTextFromAfarIsRefused(t *testing.T) {
	r := newRigFor(t, nil, Upstream{Addr: "127.0.0.1:1", TLS: "none"}, nil, nil)
	c := relaytest.FromAfar(t, serve(r.srv))
	if g := c.Line(); !strings.HasPrefix(g, "+OK") {
		t.Fatalf("greeting %q", g)
	}
	for i, tc := range []struct{ cmd, user string }{
		{"USER alice", "alice"},
		{"AUTH PLAIN " + b64("\x00alice\x00secret-password123456"), ""},
	} {
		c.Send(tc.cmd)
		if l := c.Line(); !strings.HasPrefix(l, "-ERR [AUTH] Use STLS") {
			t.Fatalf("%s from afar without TLS: %q", tc.cmd, l)
		}
		r.WantOneRefusal(t, i, "pop3", "plaintext_refused", tc.user)
	}
	if strings.Contains(r.AuditLog(), "secret-password") {
		t.Error("the audit log holds the password")
	}
}
