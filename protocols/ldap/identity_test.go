package ldap

import (
	"strings"
	"testing"
	"time"

	"github.com/stepgate/stepgate/internal/session"
	"github.com/stepgate/stepgate/internal/verifier"
	"github.com/stepgate/stepgate/internal/verifier/verifiertest"
)

// roomyLimits keeps the lockout out of the way of tests that send many
// failures on purpose; the lockout has tests of its own.
func roomyLimits(c *session.Config) {
	c.Limits = session.Limits{MaxFailures: 10000, Window: time.Minute, Lockout: time.Minute, MaxLockout: time.Minute}
}

// nameForms are the forms in which alice's name can reach stepgate, all of
// which slapd may well take for alice.
func nameForms() []string {
	people := ",ou=people," + base
	return []string{
		`uid=alice\20` + people, `uid=alice\ ` + people, `uid=\20alice` + people, `uid=\61lice` + people,
		`UID=alice` + people, `uid=ALICE` + people, `Uid=Alice` + people, `uid=ａｌｉｃｅ` + people,
		`uid=alice,OU=People,` + strings.ToUpper(base), `uid=alice, ou=people, ` + base,
		"ａｌｉｃｅ", "ＡＬＩＣＥ", "ALICE", "Alice", "alice@example.org", "ALICE@EXAMPLE.ORG",
		" alice", "alice ", "alice\t", "al\u00adice", "alice\u200b",
	}
}

// TestProxyNameForms: in proxy mode, under both policies, no form of an
// enrolled user's name signs in with the directory password alone, and
// afterwards the account still signs in with password and code.
func TestProxyNameForms(t *testing.T) {
	for _, policy := range []verifier.Policy{verifier.PolicyAllow, verifier.PolicyDeny} {
		t.Run(string(policy), func(t *testing.T) {
			p := newProxyRigWith(t, verifiertest.Options{
				Configure:     func(c *verifier.Config) { c.Policy = policy },
				SessionConfig: roomyLimits,
			})
			alice := p.AddEnrolled(t, "alice", "not-used-in-proxy-mode")
			for _, form := range nameForms() {
				for _, secret := range []string{"slapd-pass", "slapd-pass" + wrongCode(alice.Code(t))} {
					if rc, out := p.whoami(t, form, secret); rc == 0 {
						t.Errorf("bind name %q signed in without alice's code: %s", form, out)
					}
				}
			}
			// Forms the profile folds are alice, and take her code.
			if rc, out := p.whoami(t, "ＡＬＩＣＥ", "slapd-pass"+alice.Code(t)); rc != 0 || !strings.Contains(out, "dn:uid=alice,ou=people,") {
				t.Fatalf("full-width ALICE with password and code: exit %d: %s", rc, out)
			}
			p.Clock.Advance(time.Minute)
			dn := "uid=alice,ou=people," + base
			if rc, out := p.whoami(t, dn, "slapd-pass"+alice.Code(t)); rc != 0 {
				t.Fatalf("alice after every other form: exit %d: %s", rc, out)
			}
			// user07 exists only upstream: a roll-out user under allow.
			rc, _ := p.whoami(t, "uid=user07,ou=people,"+base, "user07-pass")
			if (policy == verifier.PolicyAllow) != (rc == 0) {
				t.Fatalf("user07 (not enrolled) under %s: exit %d", policy, rc)
			}
		})
	}
}

// TestNameFormsOwnDirectory: stepgate's own directory, where stepgate
// checks the password: the same forms, and a crafted form (KELVIN SIGN for
// k) does not make the real user unknown, which it did when the account
// cache folded case with Go's rules and SQLite with ASCII's.
func TestNameFormsOwnDirectory(t *testing.T) {
	for _, policy := range []verifier.Policy{verifier.PolicyAllow, verifier.PolicyDeny} {
		t.Run(string(policy), func(t *testing.T) {
			r := newRigWith(t, nil, nil, verifiertest.Options{
				Configure:     func(c *verifier.Config) { c.Policy = policy },
				SessionConfig: roomyLimits,
			})
			alice := r.AddEnrolled(t, "alice", "classmate")
			kate := r.AddEnrolled(t, "kate", "katepw")
			for _, form := range nameForms() {
				if rc, out := r.whoami(t, form, "classmate"); rc == 0 {
					t.Errorf("bind name %q signed in without alice's code: %s", form, out)
				}
			}
			if rc, _ := r.whoami(t, "\u212Aate", "katepw"+wrongCode(kate.Code(t))); rc != 49 {
				t.Fatalf("KELVIN SIGN kate with a wrong code: exit %d, want 49", rc)
			}
			if rc, out := r.whoami(t, "uid=kate,ou=people,"+base, "katepw"+kate.Code(t)); rc != 0 {
				t.Fatalf("kate after a KELVIN SIGN bind: exit %d: %s", rc, out)
			}
			if rc, out := r.whoami(t, "ＡＬＩＣＥ", "classmate"+alice.Code(t)); rc != 0 || !strings.Contains(out, "dn:uid=alice,ou=people,") {
				t.Fatalf("full-width ALICE with password and code: exit %d: %s", rc, out)
			}
		})
	}
}

// TestProxyBoundIdentity: the account is the one the directory bound, not
// the name the client sent. An entry whose user attribute also holds
// "alice" binds with its own password; under policy allow the unknown
// name "alias" would be a roll-out user, but the directory says the bound
// entry is (also) alice, who is enrolled: refused.
func TestProxyBoundIdentity(t *testing.T) {
	alias := "dn: uid=alias,ou=people," + base + "\nobjectClass: inetOrgPerson\nuid: alias\nuid: alice\ncn: alias\nsn: alias\nuserPassword: alias-pass\n\n"
	p := newProxyRigWith(t, verifiertest.Options{
		Configure:     func(c *verifier.Config) { c.Policy = verifier.PolicyAllow },
		SessionConfig: roomyLimits,
	}, alias)
	p.AddEnrolled(t, "alice", "not-used-in-proxy-mode")
	if rc, out := p.whoami(t, "uid=alias,ou=people,"+base, "alias-pass"); rc != 49 {
		t.Fatalf("an entry that is also alice signed in with its password alone: exit %d: %s", rc, out)
	}
	if !strings.Contains(p.AuditLog(), `"reason":"identity_mismatch"`) {
		t.Fatalf("no identity_mismatch in the audit log:\n%s", p.AuditLog())
	}
	// A roll-out user whose entry is only itself signs in.
	if rc, out := p.whoami(t, "uid=user03,ou=people,"+base, "user03-pass"); rc != 0 {
		t.Fatalf("user03 under allow: exit %d: %s", rc, out)
	}
}
