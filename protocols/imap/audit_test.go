package imap

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stepgate/stepgate/internal/relay/relaytest"
	"github.com/stepgate/stepgate/internal/testenv"
)

// newRefusalRig is a front end whose mail server is never reached: every
// sign-in in these tests is refused before the verifier is asked.
func newRefusalRig(t *testing.T) *rig {
	t.Helper()
	return newRigFor(t, nil, Upstream{Addr: "127.0.0.1:1", TLS: "none"}, testenv.NewPKI(t).Server, nil)
}

// wantOneEvent checks that the audit log holds exactly one event since
// it held before, a refusal with reason and user.
func wantOneEvent(t *testing.T, r *rig, before int, reason, user string) {
	t.Helper()
	r.WantOneRefusal(t, before, "imap", reason, user)
	if strings.Contains(r.AuditLog(), "secret-password") {
		t.Error("the audit log holds the password")
	}
}

// dial opens a raw connection and reads the greeting.
func dial(t *testing.T, r *rig) (send func(string), line func() string) {
	t.Helper()
	c := r.Dial(t)
	c.Line()
	return c.Send, c.Line
}

// TestRefusalsAreAudited: each way the IMAP front end turns a sign-in
// away before the verifier writes exactly one audit event with its reason.
func TestRefusalsAreAudited(t *testing.T) {
	r := newRefusalRig(t)
	long := strings.Repeat("p", 2000)
	for _, c := range []struct {
		name, reason, user string
		do                 func(send func(string), line func() string) string
	}{
		{"authzid of another user", "authzid_refused", "alice", func(send func(string), line func() string) string {
			send("a1 AUTHENTICATE PLAIN " + b64("bob\x00alice\x00secret-password123456"))
			return line()
		}},
		{"over-long password", "credentials_too_long", "alice", func(send func(string), line func() string) string {
			send(`a1 LOGIN alice "secret-password` + long + `"`)
			return line()
		}},
		{"over-long password literal", "credentials_too_long", "alice", func(send func(string), line func() string) string {
			send(fmt.Sprintf("a1 LOGIN alice {%d}", 2000))
			return line()
		}},
		{"over-long SASL response", "credentials_too_long", "", func(send func(string), line func() string) string {
			send("a1 AUTHENTICATE PLAIN " + b64("\x00alice\x00secret-password"+long+long))
			return line()
		}},
		{"over-long SASL response on its own line", "credentials_too_long", "", func(send func(string), line func() string) string {
			send("a1 AUTHENTICATE PLAIN")
			line() // "+ "
			send(b64("\x00alice\x00secret-password" + long + long))
			return line()
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := len(r.Events(t))
			send, line := dial(t, r)
			if l := c.do(send, line); !strings.HasPrefix(l, "a1 NO") && !strings.HasPrefix(l, "a1 BAD") && !strings.HasPrefix(l, "* BYE") {
				t.Fatalf("reply %q, want a refusal", l)
			}
			send("a2 LOGOUT") // ends the connection either way
			wantOneEvent(t, r, before, c.reason, c.user)
		})
	}
}

// TestPrivacyRequiredIsAudited: LOGIN and AUTHENTICATE in clear from a
// client that is not on this machine are refused with PRIVACYREQUIRED and
// audited once each.
func TestPrivacyRequiredIsAudited(t *testing.T) {
	r := newRefusalRig(t)
	c := relaytest.FromAfar(t, serve(r.srv))
	c.Line()
	for i, cmd := range []string{"LOGIN alice secret-password123456", "AUTHENTICATE PLAIN " + b64("\x00alice\x00secret-password123456")} {
		c.Send(fmt.Sprintf("a%d %s", i, cmd))
		if l := c.Line(); !strings.HasPrefix(l, fmt.Sprintf("a%d NO [PRIVACYREQUIRED]", i)) {
			t.Fatalf("%s from afar without TLS: %q", cmd, l)
		}
		wantOneEvent(t, r, i, "plaintext_refused", "alice")
	}
}

// TestImaplibAuthzidIsAudited: Python's imaplib sending an authorization
// identity of someone else gets one authzid_refused event.
func TestImaplibAuthzidIsAudited(t *testing.T) {
	py := testenv.NeedProgram(t, "python3")
	r := newRefusalRig(t)
	host, port, _ := net.SplitHostPort(r.Addr)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	script := `
import imaplib, sys
m = imaplib.IMAP4(sys.argv[1], int(sys.argv[2]))
try:
    m.authenticate("PLAIN", lambda _: b"bob\0alice\0secret-password123456")
except imaplib.IMAP4.error as e:
    print("refused", e)
    sys.exit(0)
print("signed in")
sys.exit(1)
`
	out, err := exec.CommandContext(ctx, py, "-c", script, host, port).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "AUTHORIZATIONFAILED") {
		t.Fatalf("imaplib with another authzid: %v: %s", err, out)
	}
	wantOneEvent(t, r, 0, "authzid_refused", "alice")
}
