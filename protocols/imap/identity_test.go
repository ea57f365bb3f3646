package imap

import (
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/stepgate/stepgate/internal/relay/relaytest"
	"github.com/stepgate/stepgate/internal/session"
	"github.com/stepgate/stepgate/internal/testenv/dovecot"
	"github.com/stepgate/stepgate/internal/verifier"
	"github.com/stepgate/stepgate/internal/verifier/verifiertest"
)

// login logs in with go-imap's client and reports whether it worked.
func login(t *testing.T, addr, user, pass string) bool {
	t.Helper()
	c, err := imapclient.DialInsecure(addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.Login(user, pass).Wait() == nil
}

// TestLoginNameForms: Dovecot maps logins with auth_username_format=%Ln
// ("ALICE@example.org" is the mailbox alice); stepgate's login_format
// mirrors it, so under both policies no form of the enrolled alice's name
// reaches her mailbox with the password alone, while a user enrolled
// nowhere is a roll-out user under allow.
func TestLoginNameForms(t *testing.T) {
	for _, policy := range []verifier.Policy{verifier.PolicyAllow, verifier.PolicyDeny} {
		t.Run(string(policy), func(t *testing.T) {
			dc := dovecot.Start(t, dovecot.Options{Users: map[string]string{"alice": "classmate", "bob": "bobsecret"},
				UsernameFormat: "%Ln"})
			r := newRigWith(t, dc, Upstream{Addr: dc.Addr(), TLS: "none"}, nil, nil, verifiertest.Options{
				Configure: func(c *verifier.Config) { c.Policy = policy },
				SessionConfig: func(c *session.Config) {
					c.Limits = session.Limits{MaxFailures: 10000, Window: time.Minute, Lockout: time.Minute, MaxLockout: time.Minute}
				},
			})
			alice := r.AddEnrolled(t, "alice", "unused-upstream-checks")
			for _, form := range []string{"alice", "ALICE", "Alice", "ａｌｉｃｅ", "alice@example.org",
				"ALICE@EXAMPLE.ORG", "alice@other.example", "Alice@", "alice@@x"} {
				if login(t, r.Addr, form, "classmate") {
					t.Errorf("login %q reached alice's mailbox without her code", form)
				}
				if login(t, r.Addr, form, "classmate"+relaytest.WrongCode(alice.Code(t))) {
					t.Errorf("login %q reached alice's mailbox with a wrong code", form)
				}
			}
			// With her code, the domain form is alice: Dovecot gets the
			// name as the client sent it and maps it its own way.
			if !login(t, r.Addr, "ALICE@example.org", "classmate"+alice.Code(t)) {
				t.Fatal("ALICE@example.org with password and code was refused")
			}
			if got := login(t, r.Addr, "bob@example.org", "bobsecret"); got != (policy == verifier.PolicyAllow) {
				t.Fatalf("bob (enrolled nowhere) under %s: logged in = %v", policy, got)
			}
		})
	}
}
