package imap

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stepgate/stepgate/internal/testenv"
)

// newRefusalRig is a front end whose mail server is never reached: every
// sign-in in these tests is refused before the verifier is asked.
func newRefusalRig(t *testing.T) *rig {
	t.Helper()
	return newRigFor(t, nil, Upstream{Addr: "127.0.0.1:1", TLS: "none"}, testenv.NewPKI(t).Server, nil)
}

// events decodes the audit log.
func events(t *testing.T, r *rig) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(r.AuditLog()), "\n") {
		if l == "" {
			continue
		}
		m := map[string]any{}
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("audit line %q: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

// wantOneEvent checks that the audit log holds exactly one event since
// it held before, a refusal with reason and user.
func wantOneEvent(t *testing.T, r *rig, before int, reason, user string) {
	t.Helper()
	evs := events(t, r)
	if len(evs) != before+1 {
		t.Fatalf("%d audit events for one refusal, want 1:\n%s", len(evs)-before, r.AuditLog())
	}
	ev := evs[before]
	if ev["msg"] != "decision" || ev["protocol"] != "imap" || ev["result"] != "deny" || ev["reason"] != reason || ev["user"] != user {
		t.Errorf("audit event %v, want a deny for %q with reason %s", ev, user, reason)
	}
	if strings.Contains(r.AuditLog(), "secret-password") {
		t.Error("the audit log holds the password")
	}
}

// dial opens a raw connection and reads the greeting.
func dial(t *testing.T, r *rig) (send func(string), line func() string) {
	t.Helper()
	nc, err := net.Dial("tcp", r.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(15 * time.Second))
	br := bufio.NewReader(nc)
	line = func() string {
		t.Helper()
		l, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("reading: %v", err)
		}
		return strings.TrimRight(l, "\r\n")
	}
	send = func(s string) { nc.Write([]byte(s + "\r\n")) }
	line()
	return send, line
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
			before := len(events(t, r))
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
	client, server := net.Pipe() // its address is "pipe": not loopback
	defer client.Close()
	go newConn(r.srv, server, server, false).serve(context.Background())
	client.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(client)
	br.ReadString('\n')
	for i, cmd := range []string{"LOGIN alice secret-password123456", "AUTHENTICATE PLAIN " + b64("\x00alice\x00secret-password123456")} {
		go client.Write([]byte(fmt.Sprintf("a%d %s\r\n", i, cmd)))
		if l, _ := br.ReadString('\n'); !strings.HasPrefix(l, fmt.Sprintf("a%d NO [PRIVACYREQUIRED]", i)) {
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
	host, port, _ := net.SplitHostPort(r.addr)
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
