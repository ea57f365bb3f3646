package ldap

import (
	"bufio"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	goldap "github.com/go-ldap/ldap/v3"

	"github.com/stepgate/stepgate/internal/audit"
	"github.com/stepgate/stepgate/internal/verifier"
	"github.com/stepgate/stepgate/internal/verifier/verifiertest"
)

// newAuditedRig is a rig whose audit log goes through the audit handler,
// as `stepgate serve` writes it; flush writes its pending summaries.
func newAuditedRig(t *testing.T) (r *rig, flush func()) {
	t.Helper()
	var h *audit.Handler
	r = newRigWith(t, nil, nil, verifiertest.Options{
		Configure: func(c *verifier.Config) {
			// No ticker: the test decides when an interval ends.
			h = audit.NewHandler(c.Audit.Handler(), audit.Options{Interval: -1})
			c.Audit = slog.New(h)
		},
	})
	t.Cleanup(func() { h.Close() })
	return r, func() { h.Close() }
}

// auditEvents decodes the audit log; every line must be one JSON object.
func auditEvents(t *testing.T, log string) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(log))
	sc.Buffer(nil, 8<<20)
	for sc.Scan() {
		m := map[string]any{}
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("audit line is not one JSON object: %v", err)
		}
		out = append(out, m)
	}
	return out
}

// TestLockedOutFloodStaysSmall: one connection binds 2,000 times with
// long bind names: every 20th is 60,000 bytes (under the 64 KiB cap on a
// message before a bind), the others 16 KiB.
// It is locked out after a few failures; the audit log holds each kind of
// refusal once, cut, and summaries that count the rest, and stays under
// 64 KiB (the same flood wrote every name whole before names were cut and
// repeats summarised).
func TestLockedOutFloodStaysSmall(t *testing.T) {
	r, flush := newAuditedRig(t)
	// Long names, but under the 64 KiB a message may have before a bind:
	// a longer one is a protocol error that closes the connection.
	long, short := strings.Repeat("m", 60000), strings.Repeat("s", 16<<10)
	c, err := goldap.DialURL(r.url())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const binds = 2000
	for i := range binds {
		name := short
		if i%20 == 0 {
			name = long
		}
		// Distinct guesses: a string that failed already is answered
		// from memory (repeated_failure) and uses no budget.
		err := c.Bind(name, fmt.Sprintf("wrongpassword%d123456", i))
		if !goldap.IsErrorWithCode(err, goldap.LDAPResultInvalidCredentials) {
			t.Fatalf("bind %d: %v, want invalidCredentials", i, err)
		}
	}
	// A real client's binds count the same, from connections of their own.
	extra := 0
	t.Run("ldapwhoami", func(t *testing.T) {
		for i := range 3 {
			// 60 KB: under the 64 KiB a message may have before a bind.
			rc, out := run(t, nil, "ldapwhoami", "-x", "-H", r.url(), "-D", strings.Repeat("w", 60000), "-w", fmt.Sprintf("wrongpassword-w%d-123456", i))
			if rc != 49 {
				t.Fatalf("ldapwhoami while locked out: exit %d, want 49 (invalidCredentials): %.300s", rc, out)
			}
			extra++
		}
	})
	attempts := binds + extra
	flush()
	log := r.AuditLog()
	if len(log) > 64<<10 {
		t.Fatalf("%d attempts made %d bytes of audit log, want under 64 KiB", attempts, len(log))
	}
	decisions, lockedOut, lockedSuppressed := 0, 0, 0
	for _, ev := range auditEvents(t, log) {
		if u, ok := ev["user"].(string); ok && len(u) > 300 {
			t.Errorf("a %d-byte user name not cut: %.300q", len(u), u)
		}
		n, summary := ev["suppressed"].(float64)
		switch {
		case ev["msg"] == "decision":
			decisions++
			if ev["reason"] == string(verifier.ReasonLocked) {
				lockedOut++
			}
		case summary:
			decisions += int(n)
			if ev["reason"] == string(verifier.ReasonLocked) {
				lockedSuppressed += int(n)
				if want := fmt.Sprintf("audit: suppressed %d locked_out events from 127.0.0.1 in ", int(n)); !strings.HasPrefix(ev["msg"].(string), want) {
					t.Errorf("summary %q, want %q...", ev["msg"], want)
				}
			}
		}
	}
	if decisions != attempts {
		t.Errorf("events and summaries account for %d decisions, want %d", decisions, attempts)
	}
	// Five failures lock the source out; every later bind is locked_out,
	// written once and summarised after.
	if lockedOut != 1 || lockedSuppressed != attempts-session5-1 {
		t.Errorf("locked_out: %d written, %d summarised; want 1 and %d\n%s", lockedOut, lockedSuppressed, attempts-session5-1, log)
	}
}

// session5 is the default failure budget (session.DefaultLimits).
const session5 = 5
