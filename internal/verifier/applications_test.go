package verifier_test

import (
	"net/netip"
	"testing"

	"github.com/stepgate/stepgate/internal/verifier"
)

// TestApplicationAddressHasNoBudget: five wrong codes from three users
// through one application's address lock out neither the address nor a
// fourth user with the right password and a fresh code; without the
// address in Applications (the old behaviour) the fourth user is refused.
// Each user's own budget still counts at the application's address.
func TestApplicationAddressHasNoBudget(t *testing.T) {
	const apache = "127.0.0.1"
	for _, c := range []struct {
		name       string
		apps       verifier.Networks
		wantFourth verifier.Reason
	}{
		{"listed", verifier.Networks{netip.MustParsePrefix("127.0.0.0/8")}, verifier.ReasonCode},
		{"not listed", nil, verifier.ReasonLocked},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, func(vc *verifier.Config) { vc.Applications = c.apps })
			carol := e.AddEnrolled(t, "carol", "carolpw")
			dave := e.AddEnrolled(t, "dave", "davepw")
			erin := e.AddEnrolled(t, "erin", "erinpw")
			alice := e.AddEnrolled(t, "alice", "classmate")
			from := func(user, secret string) verifier.Attempt {
				a := attempt(user, secret)
				a.Remote = apache
				return a
			}
			for _, a := range []verifier.Attempt{
				from("carol", "carolpw"+wrongCodeN(carol.Code(t), 1)),
				from("carol", "carolpw"+wrongCodeN(carol.Code(t), 2)),
				from("dave", "davepw"+wrongCodeN(dave.Code(t), 1)),
				from("dave", "davepw"+wrongCodeN(dave.Code(t), 2)),
				from("erin", "erinpw"+wrongCodeN(erin.Code(t), 1)),
			} {
				want(t, verify(e, a), verifier.Deny, verifier.ReasonBadCode)
			}
			d := verify(e, from("alice", "classmate"+alice.Code(t)))
			if c.wantFourth == verifier.ReasonCode {
				want(t, d, verifier.Allow, verifier.ReasonCode)
			} else {
				want(t, d, verifier.Deny, verifier.ReasonLocked)
			}
		})
	}

	t.Run("per user still", func(t *testing.T) {
		e := newEnv(t, func(vc *verifier.Config) {
			vc.Applications = verifier.Networks{netip.MustParsePrefix(apache + "/32")}
		})
		carol := e.AddEnrolled(t, "carol", "carolpw")
		for i := 0; i < 5; i++ {
			a := attempt("carol", "carolpw"+wrongCodeN(carol.Code(t), i+1))
			a.Remote = apache
			want(t, verify(e, a), verifier.Deny, verifier.ReasonBadCode)
		}
		a := attempt("carol", "carolpw"+carol.Code(t))
		a.Remote = apache
		want(t, verify(e, a), verifier.Deny, verifier.ReasonLocked)
	})

	t.Run("other addresses still", func(t *testing.T) {
		e := newEnv(t, func(vc *verifier.Config) {
			vc.Applications = verifier.Networks{netip.MustParsePrefix(apache + "/32")}
		})
		alice := e.AddEnrolled(t, "alice", "classmate")
		for i := 0; i < 5; i++ {
			a := attempt("nobody"+string(rune('a'+i)), "x000000")
			a.Remote = "127.0.0.2"
			want(t, verify(e, a), verifier.Deny, verifier.ReasonUnknownUser)
		}
		a := attempt("alice", "classmate"+alice.Code(t))
		a.Remote = "127.0.0.2"
		want(t, verify(e, a), verifier.Deny, verifier.ReasonLocked)
	})
}

func TestNetworksContains(t *testing.T) {
	n := verifier.Networks{netip.MustParsePrefix("10.0.0.0/24"), netip.MustParsePrefix("2001:db8::/64"), netip.MustParsePrefix("192.0.2.7/32")}
	for remote, in := range map[string]bool{
		"10.0.0.9": true, "10.0.1.9": false, "::ffff:10.0.0.9": true, "2001:db8::1": true, "2001:db8:0:1::1": false,
		"192.0.2.7": true, "192.0.2.8": false, "": false, "pipe": false, "10.0.0.9:389": false,
	} {
		if got := n.Contains(remote); got != in {
			t.Errorf("Contains(%q) = %v, want %v", remote, got, in)
		}
	}
	if (verifier.Networks)(nil).Contains("10.0.0.9") {
		t.Error("an empty list contains an address")
	}
}
