package imap

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/stepgate/stepgate/internal/relay/relaytest"
	"github.com/stepgate/stepgate/internal/testenv/dovecot"
)

// loginVia opens a connection, sends ID with x-originating-ip claimed
// (none when empty), then LOGIN, and returns LOGIN's tagged answer.
func loginVia(t *testing.T, r *rig, claimed, user, secret string) string {
	t.Helper()
	send, line := dial(t, r)
	if claimed != "" {
		send(`a0 ID ("name" "webmail" "x-originating-ip" "` + claimed + `" "x-originating-port" "40001")`)
		if l := line(); !strings.HasPrefix(l, "* ID") {
			t.Fatalf("ID: %q", l)
		}
		if l := line(); l != "a0 OK ID completed" {
			t.Fatalf("ID: %q", l)
		}
	}
	send(`a1 LOGIN ` + user + ` "` + secret + `"`)
	for {
		if l := line(); strings.HasPrefix(l, "a1 ") {
			send("a2 LOGOUT")
			return l
		}
	}
}

// decisions are the audit log's decision events, in order.
func decisions(t *testing.T, r *rig) []map[string]any {
	var out []map[string]any
	for _, ev := range r.Events(t) {
		if ev["msg"] == "decision" {
			out = append(out, ev)
		}
	}
	return out
}

// remotesOf is the remote of each decision, in order.
func remotesOf(t *testing.T, r *rig) []string {
	var out []string
	for _, ev := range decisions(t, r) {
		s, _ := ev["remote"].(string)
		out = append(out, s)
	}
	return out
}

// TestTrustedFrontNamesTheClient: a front in imap.trusted_networks names
// the real client with ID "x-originating-ip"; that address is the
// audit event's remote, its failure budget is the one spent (five wrong
// codes claimed from 192.0.2.7 lock 192.0.2.7, not the front), and it is
// what Dovecot is told, so Dovecot logs the real client too.
func TestTrustedFrontNamesTheClient(t *testing.T) {
	dc := dovecot.Start(t, dovecot.Options{Users: map[string]string{"alice": "classmate", "carol": "carolpw"}})
	r := newRigFor(t, dc, Upstream{Addr: dc.Addr(), TLS: "none"}, nil, func(c *Config) {
		c.TrustedNetworks = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	})
	alice := r.AddEnrolled(t, "alice", "unused-local-password")
	carol := r.AddEnrolled(t, "carol", "unused-local-password")

	for i := 0; i < 5; i++ {
		if l := loginVia(t, r, "192.0.2.7", "carol", "carolpw"+relaytest.WrongCodeN(carol.Code(t), i+1)); !strings.HasPrefix(l, "a1 NO") {
			t.Fatalf("wrong code: %q", l)
		}
	}
	for i, remote := range remotesOf(t, r) {
		if remote != "192.0.2.7" {
			t.Fatalf("audit event %d has remote %q, want the client the front named, 192.0.2.7:\n%s", i, remote, r.AuditLog())
		}
	}
	code := alice.Code(t)
	before := len(decisions(t, r))
	loginVia(t, r, "192.0.2.7", "alice", "classmate"+code)
	if ev := decisions(t, r)[before]; ev["reason"] != "locked_out" {
		t.Fatalf("alice from the client whose budget is spent: %v, want locked_out", ev)
	} else if ev["remote"] != "192.0.2.7" {
		t.Fatalf("locked-out decision has remote %v, want 192.0.2.7", ev["remote"])
	}
	// The front's own address and any other client it names are not
	// locked out by 192.0.2.7's guesses.
	if l := loginVia(t, r, "192.0.2.8", "alice", "classmate"+code); !strings.HasPrefix(l, "a1 OK") {
		t.Fatalf("alice from another client of the front: %q\n%s", l, r.AuditLog())
	}
	if !strings.Contains(dc.Log(), "rip=192.0.2.8") {
		t.Errorf("Dovecot was not told the client the front named (rip=192.0.2.8):\n%s", dc.Log())
	}
}

// TestUntrustedIDIsIgnored: from an address outside imap.trusted_networks
// ID "x-originating-ip" changes nothing: an attacker cannot pick a fresh
// budget key per guess (five guesses each claiming a new address still
// lock its own address), the audit log names the real address, and
// Dovecot is told the real address.
func TestUntrustedIDIsIgnored(t *testing.T) {
	dc := dovecot.Start(t, dovecot.Options{Users: map[string]string{"alice": "classmate", "carol": "carolpw"}})
	r := newRigFor(t, dc, Upstream{Addr: dc.Addr(), TLS: "none"}, nil, func(c *Config) {
		c.TrustedNetworks = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}
	})
	alice := r.AddEnrolled(t, "alice", "unused-local-password")
	carol := r.AddEnrolled(t, "carol", "unused-local-password")

	if l := loginVia(t, r, "198.51.100.99", "alice", "classmate"+alice.Code(t)); !strings.HasPrefix(l, "a1 OK") {
		t.Fatalf("alice: %q", l)
	}
	if log := dc.Log(); strings.Contains(log, "198.51.100.99") || !strings.Contains(log, "rip=127.0.0.1") {
		t.Errorf("Dovecot was told the address an untrusted client claimed:\n%s", log)
	}
	for i := 0; i < 5; i++ {
		claimed := "198.51.100." + string(rune('1'+i))
		loginVia(t, r, claimed, "carol", "carolpw"+relaytest.WrongCodeN(carol.Code(t), i+1))
	}
	for i, remote := range remotesOf(t, r) {
		if remote != "127.0.0.1" {
			t.Fatalf("audit event %d has remote %q, want the real address 127.0.0.1:\n%s", i, remote, r.AuditLog())
		}
	}
	before := len(decisions(t, r))
	loginVia(t, r, "198.51.100.77", "alice", "classmate"+alice.NextCode(t))
	if ev := decisions(t, r)[before]; ev["reason"] != "locked_out" {
		t.Fatalf("a new claimed address after five guesses: %v, want locked_out", ev)
	}
}
