package main_test

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stepgate/stepgate/internal/testenv"
)

// TestCheckAsksTheRunningServer: with `stepgate serve` running, check is
// decided by the server, so the sign-in opens a session there and the same
// string then binds over LDAP as a session hit. Decided in its own process
// (as check did), the check used the code up and opened a session nobody
// saw, and the bind was refused as a replayed code. With the server gone,
// check still decides on its own, and says so.
func TestCheckAsksTheRunningServer(t *testing.T) {
	testenv.NeedProgram(t, "ldapwhoami")
	dir := filepath.Join(t.TempDir(), "data")
	const pw = "classmate" // enrolledAlice's
	a := serveAlice(t, dir)
	secret, now, ldapAddr, stop := a.secret, a.now, a.ldap, a.stop

	stored := pw + code(t, secret, now)
	r := run(t, dir, stored, "check", "alice")
	if r.code != 0 || r.stdout != "allow\n" || r.stderr != "allow: signed in (code)\n" {
		t.Fatalf("check with a server running: %+v", r)
	}
	var sessions []struct{ User, Protocol, Remote string }
	if err := json.Unmarshal([]byte(must(t, run(t, dir, "", "session", "list", "--json")).stdout), &sessions); err != nil {
		t.Fatal(err)
	}
	if len(sessions) != 1 || sessions[0].User != "alice" || sessions[0].Protocol != "cli" || sessions[0].Remote != "" {
		t.Fatalf("the server's sessions after check: %+v, want alice's of protocol cli", sessions)
	}
	if rc, out := ldapwhoami(t, ldapAddr, aliceDN, stored); rc != 0 || !strings.Contains(out, "dn:"+aliceDN) {
		t.Fatalf("ldapwhoami with the string check accepted: exit %d: %s", rc, out)
	}
	if r := run(t, dir, stored, "check", "--verbose", "alice"); r.code != 0 || r.stderr != "allow: session\n" {
		t.Fatalf("the same string checked again: %+v, want a session hit", r)
	}
	// Failures keep the one generic reason, and the exit code.
	if r := run(t, dir, pw+"000000", "check", "alice"); r.code != 1 || r.stdout != "deny\n" || r.stderr != "deny: invalid credentials\n" {
		t.Fatalf("check with a wrong code through the server: %+v", r)
	}
	if r := run(t, dir, pw+"000001", "check", "--verbose", "alice"); r.code != 1 || r.stderr != "deny: bad_code\n" {
		t.Fatalf("check --verbose through the server: %+v", r)
	}
	if r := stop(); r.code != 0 || strings.Contains(r.stdout+r.stderr, stored) {
		t.Fatalf("serve: exit %d, or its output holds the string:\n%s\n%s", r.code, r.stdout, r.stderr)
	}

	// No server: check decides here, with the store's sessions and
	// replay guard: the server's session is a hit, another string with
	// its used code a replay, and a fresh code signs in.
	if r := run(t, dir, stored, "check", "--verbose", "alice"); r.code != 0 || !strings.HasPrefix(r.stderr, "allow: session\n") {
		t.Fatalf("the server's string without a server: %+v, want a session hit", r)
	}
	if r := run(t, dir, "x"+stored, "check", "--verbose", "alice"); r.code != 1 || r.stdout != "deny\n" || r.stderr != "deny: replayed_code\n" {
		t.Fatalf("the used code in another string without a server: %+v", r)
	}
	fresh := pw + code(t, secret, now.Add(30*time.Second))
	r = run(t, dir, fresh, "check", "alice")
	if r.code != 0 || r.stdout != "allow\n" || !strings.Contains(r.stderr, "note: no server runs on "+dir) {
		t.Fatalf("check without a server: %+v", r)
	}
}
