package ldap

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	goldap "github.com/go-ldap/ldap/v3"
)

// lockOut fails binds as dn from 127.0.0.2 until the user is locked out:
// the user's budget fills while 127.0.0.1, which the clients under test
// use, keeps its own.
func lockOut(t *testing.T, url, dn string) {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}, Timeout: 10 * time.Second}
	c, err := goldap.DialURL(url, goldap.DialWithDialer(d))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Distinct guesses: a string that failed already is answered from
	// memory and uses no budget.
	for i := range 5 {
		if err := c.Bind(dn, fmt.Sprintf("wrong-password-%d-000000", i)); !goldap.IsErrorWithCode(err, 49) {
			t.Fatalf("bind with a wrong password: %v, want invalidCredentials", err)
		}
	}
}

// TestBindControls: the password-policy request control (sent by nslcd
// on every bind, and by ldapwhoami -e ppolicy) no longer ends the
// connection; the bind answers with the response control, which says
// accountLocked for a lockout alone; an unknown control is ignored unless
// it is critical, and then the bind is refused with
// unavailableCriticalExtension and leaves the connection anonymous.
func TestBindControls(t *testing.T) {
	r := newRig(t, nil, nil)
	alice := r.AddEnrolled(t, "alice", "classmate")
	r.AddEnrolled(t, "carol", "carolsecret")
	dn := "uid=alice,ou=people," + base
	code := alice.Code(t)
	stored := "classmate" + code

	rc, out := r.whoami(t, dn, stored, "-e", "ppolicy")
	if rc != 0 || !strings.Contains(out, "dn:"+dn) {
		t.Fatalf("ldapwhoami -e ppolicy: exit %d: %s", rc, out)
	}
	// Failures other than a lockout: the same answer, control included.
	rc1, out1 := r.whoami(t, dn, "classmate"+wrongCode(code), "-e", "ppolicy")
	rc2, out2 := r.whoami(t, "uid=nobody,ou=people,"+base, "classmate"+code, "-e", "ppolicy")
	if rc1 != 49 || rc2 != 49 || out1 != out2 || strings.Contains(strings.ToLower(out1), "locked") {
		t.Errorf("wrong code and unknown user with ppolicy: exit %d and %d, want 49 and the same output:\n%s\n%s", rc1, rc2, out1, out2)
	}
	// A control stepgate does not know: ignored, or refused when critical.
	if rc, out := r.whoami(t, dn, stored, "-e", "1.3.6.1.4.1.99999.1"); rc != 0 || !strings.Contains(out, "dn:"+dn) {
		t.Errorf("non-critical unknown control: exit %d, want 0: %s", rc, out)
	}
	// ldapwhoami exits 1 on any failed bind; its output names the result.
	if rc, out := r.whoami(t, dn, stored, "-e", "!1.3.6.1.4.1.99999.1"); rc == 0 || !strings.Contains(out, "Critical extension is unavailable (12)") {
		t.Errorf("critical unknown control on bind: exit %d, want unavailableCriticalExtension (12): %s", rc, out)
	}

	// go-ldap reads the response control as slapd's ppolicy overlay's.
	c, err := goldap.DialURL(r.url())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	res, err := c.SimpleBind(&goldap.SimpleBindRequest{Username: dn, Password: stored,
		Controls: []goldap.Control{goldap.NewControlBeheraPasswordPolicy()}})
	if err != nil {
		t.Fatalf("bind with ppolicy through go-ldap: %v", err)
	}
	pp, ok := goldap.FindControl(res.Controls, oidPasswordPolicy).(*goldap.ControlBeheraPasswordPolicy)
	if !ok || pp.Error != -1 || pp.Expire != -1 || pp.Grace != -1 {
		t.Errorf("response controls of a good bind: %v, want an empty password-policy response", res.Controls)
	}
	// ldapwhoami will not mark ppolicy critical; stepgate honours it so.
	criticalPP := &goldap.ControlString{ControlType: oidPasswordPolicy, Criticality: true}
	if _, err := c.SimpleBind(&goldap.SimpleBindRequest{Username: dn, Password: stored, Controls: []goldap.Control{criticalPP}}); err != nil {
		t.Fatalf("bind with a critical ppolicy control: %v", err)
	}
	if _, err := c.Search(goldap.NewSearchRequest(base, goldap.ScopeBaseObject, 0, 0, 0, false, "(objectClass=*)", nil,
		[]goldap.Control{criticalPP})); !goldap.IsErrorWithCode(err, 12) {
		t.Errorf("search with a critical ppolicy control: %v, want unavailableCriticalExtension", err)
	}
	// Controls whose values stepgate cannot or need not read: an unknown
	// one with a value that is not BER, and paged results with no value.
	for _, ctl := range []goldap.Control{
		&goldap.ControlString{ControlType: "1.3.6.1.4.1.99999.1", ControlValue: "not BER"},
		&goldap.ControlString{ControlType: goldap.ControlTypePaging},
	} {
		if _, err := c.SimpleBind(&goldap.SimpleBindRequest{Username: dn, Password: stored, Controls: []goldap.Control{ctl}}); err != nil {
			t.Fatalf("bind with %v: %v", ctl, err)
		}
		if _, err := c.Search(goldap.NewSearchRequest(base, goldap.ScopeBaseObject, 0, 0, 0, false, "(objectClass=*)", nil,
			[]goldap.Control{ctl})); err != nil {
			t.Fatalf("search with %v: %v", ctl, err)
		}
	}
	// A refused critical control ends the bound state, as a failed bind.
	critical := &goldap.ControlString{ControlType: "1.3.6.1.4.1.99999.1", Criticality: true}
	if _, err := c.SimpleBind(&goldap.SimpleBindRequest{Username: dn, Password: stored, Controls: []goldap.Control{critical}}); !goldap.IsErrorWithCode(err, 12) {
		t.Fatalf("bind with a critical unknown control: %v, want unavailableCriticalExtension", err)
	}
	if who, err := c.WhoAmI(nil); err != nil || who.AuthzID != "" {
		t.Errorf("after a refused bind: whoami %+v, %v; want anonymous", who, err)
	}

	// A lockout says so in the control.
	carol := "uid=carol,ou=people," + base
	lockOut(t, r.url(), carol)
	rc, out = r.whoami(t, carol, "carolsecret000000", "-e", "ppolicy")
	if rc != 49 || !strings.Contains(out, "Account locked") {
		t.Errorf("ldapwhoami -e ppolicy while locked out: exit %d, want 49 and \"Account locked\": %s", rc, out)
	}
	rc, out = r.whoami(t, carol, "carolsecret000000")
	if rc != 49 || strings.Contains(out, "Account locked") {
		t.Errorf("ldapwhoami while locked out, no ppolicy asked: exit %d, want 49 and no control: %s", rc, out)
	}
	res, err = c.SimpleBind(&goldap.SimpleBindRequest{Username: carol, Password: "carolsecret000000",
		Controls: []goldap.Control{goldap.NewControlBeheraPasswordPolicy()}})
	if !goldap.IsErrorWithCode(err, 49) || res == nil {
		t.Fatalf("locked-out bind through go-ldap: %v, want invalidCredentials with controls", err)
	}
	if pp, ok := goldap.FindControl(res.Controls, oidPasswordPolicy).(*goldap.ControlBeheraPasswordPolicy); !ok || pp.Error != 1 || pp.ErrorString != "Account locked" {
		t.Errorf("response controls of a locked-out bind: %v, want error accountLocked (1)", res.Controls)
	}
	// The lockout's own words stay in the diagnostic, next to the control.
	if !strings.Contains(err.Error(), "Too many failed sign-ins; try again after ") {
		t.Errorf("locked-out bind with ppolicy: %v, want the lockout's message as diagnostic", err)
	}
	if strings.Contains(r.logs.String(), "classmate") || strings.Contains(r.logs.String(), code) {
		t.Error("a password or code reached the log")
	}
}

// TestSearchControls, own directory: a critical control stepgate does
// not honour (server-side sorting, paged results) fails the search with
// unavailableCriticalExtension instead of being ignored; the same control
// not critical is ignored; ManageDsaIT, which stepgate's tree (no
// referrals) honours by doing nothing, passes even when critical.
func TestSearchControls(t *testing.T) {
	r := newRig(t, nil, nil)
	r.AddUser(t, "alice", "pw-alice")
	r.AddUser(t, "bob", "pw-bob")
	addService(t, r.Store, "app", "app-secret")
	search := func(extra ...string) (int, string) {
		args := append([]string{"-x", "-LLL", "-H", r.url(), "-D", "uid=app,ou=services," + base, "-w", "app-secret",
			"-b", "ou=people," + base}, extra...)
		return run(t, nil, "ldapsearch", append(args, "(objectClass=inetOrgPerson)", "uid")...)
	}
	for _, c := range []struct {
		name    string
		extra   []string
		want    int
		entries int
	}{
		{"no control", nil, 0, 2},
		{"critical server-side sorting", []string{"-E", "!sss=cn"}, 12, 0},
		{"server-side sorting, not critical", []string{"-E", "sss=cn"}, 0, 2},
		{"critical unknown control", []string{"-E", "!1.3.6.1.4.1.99999.1=:x"}, 12, 0},
		{"unknown control", []string{"-E", "1.3.6.1.4.1.99999.1=:x"}, 0, 2},
		{"critical ManageDsaIT", []string{"-MM"}, 0, 2},
		{"paged results (not done: all at once)", []string{"-E", "pr=1/noprompt"}, 0, 2},
		{"critical paged results", []string{"-E", "!pr=1/noprompt"}, 12, 0},
	} {
		rc, out := search(c.extra...)
		if rc != c.want || strings.Count(out, "dn: ") != c.entries {
			t.Errorf("%s: exit %d with %d entries, want %d with %d:\n%s", c.name, rc, strings.Count(out, "dn: "), c.want, c.entries, out)
		}
	}
	// The root DSE lists what stepgate honours.
	rc, out := run(t, nil, "ldapsearch", "-x", "-LLL", "-H", r.url(), "-s", "base", "-b", "", "supportedControl")
	if rc != 0 || !strings.Contains(out, "supportedControl: "+oidPasswordPolicy) || !strings.Contains(out, "supportedControl: "+oidManageDsaIT) {
		t.Errorf("root DSE supportedControl: exit %d: %s", rc, out)
	}
}

// TestProxyControls: in proxy mode a bind's controls are stepgate's (the
// upstream bind is its own), a search's go to the directory as they came:
// slapd then answers a critical control it lacks (sorting: no sssvlv
// overlay) with 12 itself, and honours critical paged results. Proxied
// authorization is never relayed: the upstream would act as someone not
// proven here.
func TestProxyControls(t *testing.T) {
	p := newProxyRig(t)
	alice := p.AddEnrolled(t, "alice", "x")
	p.AddEnrolled(t, "user07", "x")
	dn := "uid=alice,ou=people," + base
	stored := "slapd-pass" + alice.Code(t)
	if rc, out := p.whoami(t, dn, stored, "-e", "ppolicy"); rc != 0 || !strings.Contains(out, "dn:"+dn) {
		t.Fatalf("ldapwhoami -e ppolicy through the proxy: exit %d: %s", rc, out)
	}
	if rc, out := p.whoami(t, dn, stored, "-e", "!1.3.6.1.4.1.99999.1"); rc == 0 || !strings.Contains(out, "Critical extension is unavailable (12)") {
		t.Errorf("critical unknown control on a proxied bind: exit %d, want unavailableCriticalExtension (12): %s", rc, out)
	}
	for _, q := range [][]string{
		{"-E", "!sss=cn"},
		{"-E", "sss=cn"},
		{"-E", "!pr=10/noprompt"},
		{"-E", "1.3.6.1.4.1.99999.1=:x"},
		{"-E", "!1.3.6.1.4.1.99999.1=:x"},
	} {
		args := append(q, "-b", base, "(uid=user*)", "uid")
		through := append([]string{"-x", "-LLL", "-H", p.url(), "-D", dn, "-w", stored}, args...)
		direct := append([]string{"-x", "-LLL", "-H", p.sd.URL(), "-D", dn, "-w", "slapd-pass"}, args...)
		rc1, out1 := run(t, nil, "ldapsearch", through...)
		rc2, out2 := run(t, nil, "ldapsearch", direct...)
		if rc1 != rc2 || out1 != out2 {
			t.Errorf("ldapsearch %v:\nthrough stepgate (exit %d):\n%s\ndirect (exit %d):\n%s", q, rc1, out1, rc2, out2)
		}
		if q[1] == "!sss=cn" && rc1 != 12 {
			t.Errorf("critical sorting through the proxy: exit %d, want 12 (slapd has no sssvlv here)", rc1)
		}
		if q[1] == "!pr=10/noprompt" && (rc1 != 0 || strings.Count(out1, "dn: ") != 50) {
			t.Errorf("critical paging through the proxy: exit %d, %d entries, want 0 and 50", rc1, strings.Count(out1, "dn: "))
		}
	}
	// Proxied authorization: refused when critical (as RFC 4370 wants
	// it), and never reaches slapd.
	rc, out := run(t, nil, "ldapsearch", "-x", "-LLL", "-H", p.url(), "-D", dn, "-w", stored,
		"-e", "!authzid=dn:uid=user07,ou=people,"+base, "-b", base, "(uid=alice)", "uid")
	if rc != 12 {
		t.Errorf("proxied authorization through the proxy: exit %d, want 12: %s", rc, out)
	}
	if strings.Contains(p.sd.Log(), "2.16.840.1.113730.3.4.18") || strings.Contains(p.sd.Log(), "authzid") {
		t.Error("a proxied authorization control reached slapd")
	}
	// A lockout says so in proxy mode too.
	lockOut(t, p.url(), "uid=user07,ou=people,"+base)
	rc, out = p.whoami(t, "uid=user07,ou=people,"+base, "user07-pass000000", "-e", "ppolicy")
	if rc != 49 || !strings.Contains(out, "Account locked") {
		t.Errorf("ldapwhoami -e ppolicy while locked out, proxy mode: exit %d, want 49 and \"Account locked\": %s", rc, out)
	}
}
