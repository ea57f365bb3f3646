package ldap

import (
	"strings"
	"testing"
	"time"

	"github.com/stepgate/stepgate/internal/testenv/nslcd"
)

// TestPAMLoginThroughNslcd: a Linux login through pam_ldap and nslcd,
// whose binds (its own and the user's) all carry the password-policy
// request control. Password and code let the user in, a wrong code does
// not, the stored string works again after the code rolled over (the
// session), and a locked-out user is told "Account locked" by nslcd,
// which read it in the response control.
func TestPAMLoginThroughNslcd(t *testing.T) {
	r := newRig(t, nil, nil)
	alice := r.AddEnrolled(t, "alice", "classmate")
	r.AddEnrolled(t, "carol", "carolsecret")
	addService(t, r.Store, "nslcd", "nslcd-secret")
	d := nslcd.Start(t, nslcd.Options{URI: r.url() + "/", Base: base,
		BindDN: "uid=nslcd,ou=services," + base, BindPW: "nslcd-secret",
		// stepgate's people are inetOrgPerson, not posixAccount.
		Extra: []string{"filter passwd (objectClass=inetOrgPerson)"}})
	code := alice.Code(t)
	stored := "classmate" + code

	if ok, out := d.Authenticate("alice", "classmate"+wrongCode(code)); ok {
		t.Fatalf("PAM let in a wrong code:\n%s", out)
	}
	if ok, out := d.Authenticate("alice", stored); !ok {
		t.Fatalf("PAM refused password+code:\n%s\nnslcd:\n%s", out, d.Log())
	}
	r.Clock.Advance(10 * time.Minute)
	if ok, out := d.Authenticate("alice", stored); !ok {
		t.Fatalf("PAM refused the stored string after the code rolled over:\n%s\nnslcd:\n%s", out, d.Log())
	}

	carol := "uid=carol,ou=people," + base
	lockOut(t, r.url(), carol)
	ok, out := d.Authenticate("carol", "carolsecret000000")
	if ok {
		t.Fatalf("PAM let in a locked-out user:\n%s", out)
	}
	t.Logf("pamtester, locked out: %s", out)
	if want := carol + ": Account locked"; !strings.Contains(d.Log(), want) {
		t.Errorf("nslcd did not log %q for a locked-out user:\n%s", want, d.Log())
	}
	if strings.Contains(d.Log(), "classmate") || strings.Contains(r.logs.String(), "classmate") {
		t.Error("a password reached a log")
	}
}
