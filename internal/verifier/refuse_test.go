package verifier_test

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"

	"github.com/stepgate/stepgate/internal/verifier"
)

type countingObserver struct {
	mu      sync.Mutex
	decided map[verifier.Reason]int
}

func (o *countingObserver) Decided(_ *verifier.Attempt, d *verifier.Decision) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.decided[d.Reason]++
}
func (o *countingObserver) LockedOut(string) {}

// TestRefuseAuditsLikeADecision: a front end's refusal writes one audit
// event of the decision's shape, is counted, and counts no failure
// towards a lockout (no password was tried).
func TestRefuseAuditsLikeADecision(t *testing.T) {
	obs := &countingObserver{decided: map[verifier.Reason]int{}}
	e := newEnv(t, func(c *verifier.Config) { c.Observer = obs })
	alice := e.AddEnrolled(t, "alice", "classmate")
	a := attempt("alice", "classmate"+alice.Code(t))
	a.Protocol = "imap"
	for range 20 {
		d := e.Verifier.Refuse(context.Background(), a, verifier.ReasonPlainText)
		want(t, d, verifier.Deny, verifier.ReasonPlainText)
	}
	lines := strings.Split(strings.TrimSpace(e.AuditLog()), "\n")
	if len(lines) != 20 {
		t.Fatalf("%d audit events for 20 refusals:\n%s", len(lines), e.AuditLog())
	}
	var ev map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &ev); err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]any{"msg": "decision", "protocol": "imap", "user": "alice", "remote": "192.0.2.10",
		"tls": false, "result": "deny", "reason": "plaintext_refused"} {
		if ev[k] != v {
			t.Errorf("event %s = %v, want %v", k, ev[k], v)
		}
	}
	if strings.Contains(e.AuditLog(), "classmate") {
		t.Error("the audit event holds the password")
	}
	if obs.decided[verifier.ReasonPlainText] != 20 {
		t.Errorf("observer counted %d refusals, want 20", obs.decided[verifier.ReasonPlainText])
	}
	// Twenty refusals locked nobody out: the real sign-in still works.
	want(t, verify(e, a), verifier.Allow, verifier.ReasonCode)
}
