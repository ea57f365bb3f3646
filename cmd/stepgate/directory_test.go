package main_test

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"
	goldap "github.com/go-ldap/ldap/v3"

	"github.com/stepgate/stepgate/internal/testenv"
	"github.com/stepgate/stepgate/internal/testenv/dovecot"
	"github.com/stepgate/stepgate/internal/testenv/slapd"
)

// The directory of the roll-out tests: stepgate's lookup account, people
// who were never added to stepgate, and cn=2sv, whose members must use
// two-step. Anonymous clients may only bind (RestrictReads).
const (
	rollLookupDN = "cn=stepgate-lookup," + slapd.Suffix
	rollLookupPW = "lookup-secret"
	rollGroup    = "cn=2sv,ou=groups," + slapd.Suffix
)

var (
	dora  = slapd.Person{UID: "dora", Password: "dora-pass"}
	carol = slapd.Person{UID: "carol", Password: "carol-pass"} // in cn=2sv
	erin  = slapd.Person{UID: "erin", Password: "erin-pass"}
	// fay signs in only while lookups are anonymous: a failed string is
	// remembered (across restarts too) for the lockout window.
	fay = slapd.Person{UID: "fay", Password: "fay-pass"}
)

func rollOutDirectory(t *testing.T) *slapd.Server {
	t.Helper()
	testenv.NeedPrograms(t, "ldapwhoami", "ldapmodify")
	lookup := "dn: " + rollLookupDN + "\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\n" +
		"cn: stepgate-lookup\nuserPassword: " + rollLookupPW + "\n\n"
	sd := slapd.Start(t, slapd.Options{MemberOf: true, RestrictReads: true, LDIF: lookup + dora.LDIF() + carol.LDIF() + erin.LDIF() + fay.LDIF()})
	sd.Modify(slapd.Group{CN: "2sv", Members: []string{carol.DN()}}.LDIF())
	return sd
}

// rollOutConfig writes the configuration of the README's "Rolling out to
// an organisation": proxy mode, cn=2sv required, the others by policy,
// and the given exempt networks.
func rollOutConfig(t *testing.T, sd *slapd.Server, ldapAddr, policy string, lookup bool, exempt ...string) string {
	t.Helper()
	dir := t.TempDir()
	var b strings.Builder
	fmt.Fprintf(&b, "audit:\n  file: %s\n", filepath.Join(dir, "audit.log"))
	fmt.Fprintf(&b, "two_step:\n  policy: %s\n  require_groups: [%q]\n", policy, rollGroup)
	if len(exempt) > 0 {
		fmt.Fprintf(&b, "  exempt_networks: [%s]\n", strings.Join(exempt, ", "))
	}
	fmt.Fprintf(&b, "ldap:\n  listen: %s\n  upstream:\n    urls: [%s]\n    lookup_cache: 1s\n", ldapAddr, sd.URL())
	if lookup {
		pw := filepath.Join(dir, "lookup.pw")
		if err := os.WriteFile(pw, []byte(rollLookupPW+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "    lookup_dn: %s\n    lookup_password_file: %s\n", rollLookupDN, pw)
	}
	b.WriteString("imap:\n  listen: \"off\"\n")
	f := filepath.Join(dir, "stepgate.yaml")
	if err := os.WriteFile(f, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// bindFrom binds to stepgate's LDAP front end from a chosen loopback
// address (127.0.0.2 stands for the printer VLAN).
func bindFrom(t *testing.T, from, addr, dn, pw string) error {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 10 * time.Second}
	c, err := goldap.DialURL("ldap://"+addr, goldap.DialWithDialer(d))
	if err != nil {
		t.Fatalf("dial from %s: %v", from, err)
	}
	defer c.Close()
	return c.Bind(dn, pw)
}

// TestDirectoryAccountsRollOut: the whole roll-out against a real slapd
// that refuses anonymous reads. Without the lookup account nobody is
// found; with it, a directory user never added by hand enrolls with the
// CLI, signs in through the proxy with password and code, is renamed
// upstream (modrdn) and keeps working with the same authenticator; a
// member of cn=2sv without a code is refused while a non-member gets in
// with the password alone (policy allow); with policy deny, an exempt
// network lets a non-member in with the password alone and never a
// member.
func TestDirectoryAccountsRollOut(t *testing.T) {
	sd := rollOutDirectory(t)
	dir := filepath.Join(t.TempDir(), "data")
	ldapAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))

	// Anonymous lookups: the directory shows nothing, so no one is known.
	anon := rollOutConfig(t, sd, ldapAddr, "allow", false)
	if r := run(t, dir, "", "--config", anon, "user", "enroll", "dora", "--json"); r.code == 0 || !strings.Contains(r.stderr, "no entry for") {
		t.Fatalf("enroll with anonymous lookups: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	_, stop := serve(t, dir, "--config", anon)
	if rc, out := ldapwhoami(t, ldapAddr, "fay", fay.Password); rc != 49 {
		t.Fatalf("anonymous lookup refused by the directory, yet: exit %d: %s", rc, out)
	}
	stop()

	// The lookup account: people are found.
	cfg := rollOutConfig(t, sd, ldapAddr, "allow", true)
	_, stop = serve(t, dir, "--config", cfg)
	if rc, out := ldapwhoami(t, ldapAddr, "erin", erin.Password); rc != 0 || !strings.Contains(out, "dn:"+erin.DN()) {
		t.Fatalf("non-member, policy allow, password alone: exit %d: %s", rc, out)
	}
	if rc, out := ldapwhoami(t, ldapAddr, "carol", carol.Password); rc != 49 {
		t.Fatalf("cn=2sv member without a code: exit %d, want 49: %s", rc, out)
	}

	// dora was never added: enrolling makes her row, bound to her entry.
	var enrolled struct{ User, Secret string }
	r := must(t, run(t, dir, "", "--config", cfg, "user", "enroll", "dora", "--json"))
	if err := json.Unmarshal([]byte(r.stdout), &enrolled); err != nil || enrolled.User != "dora" {
		t.Fatalf("enroll dora: %v\n%s", err, r.stdout)
	}
	if left := 30 - time.Now().Unix()%30; left < 5 {
		time.Sleep(time.Duration(left)*time.Second + 100*time.Millisecond)
	}
	now := time.Now()
	must(t, run(t, dir, "", "user", "confirm", "dora", code(t, enrolled.Secret, now.Add(-30*time.Second))))
	u := listed(t, dir, "dora")
	id, _ := u["external_id"].(string)
	if u["source"] != "directory" || id == "" || u["authenticators"] != float64(1) {
		t.Fatalf("user list shows dora as %v", u)
	}
	if r := must(t, run(t, dir, "", "user", "list")); !strings.Contains(r.stdout, "SOURCE") || !strings.Contains(r.stdout, "directory") {
		t.Fatalf("user list:\n%s", r.stdout)
	}
	// Enrolled: the password alone no longer does, password and code do.
	if rc, out := ldapwhoami(t, ldapAddr, dora.DN(), dora.Password); rc != 49 {
		t.Fatalf("enrolled dora with her password alone: exit %d: %s", rc, out)
	}
	if rc, out := ldapwhoami(t, ldapAddr, dora.DN(), dora.Password+code(t, enrolled.Secret, now)); rc != 0 || !strings.Contains(out, "dn:"+dora.DN()) {
		t.Fatalf("dora with password and code through the proxy: exit %d: %s", rc, out)
	}

	// Renamed upstream: same entry, new name; her authenticator follows.
	sd.Modify("dn: " + dora.DN() + "\nchangetype: modrdn\nnewrdn: uid=dorothy\ndeleteoldrdn: 1\n\n")
	dorothyDN := "uid=dorothy,ou=people," + slapd.Suffix
	if rc, out := ldapwhoami(t, ldapAddr, "dorothy", dora.Password+code(t, enrolled.Secret, now.Add(30*time.Second))); rc != 0 || !strings.Contains(out, "dn:"+dorothyDN) {
		t.Fatalf("dorothy (renamed) with password and the same authenticator's code: exit %d: %s", rc, out)
	}
	u = listed(t, dir, "dorothy")
	if u["external_id"] != id || u["authenticators"] != float64(1) || u["source"] != "directory" {
		t.Fatalf("after the rename, user list shows %v (identity was %s)", u, id)
	}
	var users []map[string]any
	json.Unmarshal([]byte(must(t, run(t, dir, "", "user", "list", "--json")).stdout), &users)
	for _, x := range users {
		if x["name"] == "dora" {
			t.Fatal("the old name still has a row")
		}
	}
	stop()

	// Policy deny, 127.0.0.2 exempt (the printer VLAN).
	cfg = rollOutConfig(t, sd, ldapAddr, "deny", true, "127.0.0.2")
	_, stop = serve(t, dir, "--config", cfg)
	if err := bindFrom(t, "127.0.0.2", ldapAddr, erin.DN(), erin.Password); err != nil {
		t.Fatalf("non-member from the exempt network, password alone: %v", err)
	}
	if err := bindFrom(t, "127.0.0.1", ldapAddr, erin.DN(), erin.Password); !goldap.IsErrorWithCode(err, goldap.LDAPResultInvalidCredentials) {
		t.Fatalf("non-member from elsewhere under policy deny: %v", err)
	}
	if err := bindFrom(t, "127.0.0.2", ldapAddr, carol.DN(), carol.Password); !goldap.IsErrorWithCode(err, goldap.LDAPResultInvalidCredentials) {
		t.Fatalf("cn=2sv member from the exempt network: %v", err)
	}
	stop()
	audit, err := os.ReadFile(filepath.Join(filepath.Dir(cfg), "audit.log"))
	if err != nil || !strings.Contains(string(audit), `"reason":"exempt_network"`) {
		t.Fatalf("audit log lacks the exempt_network sign-in (%v):\n%s", err, audit)
	}
}

// TestMailAccountsIMAPOnly: in front of a mail server that checks the
// passwords (no directory, no master user), a login name without a row
// is a mail account that has not enrolled: refused under policy deny,
// and `user enroll` makes its row by name, after which password and code
// sign in.
func TestMailAccountsIMAPOnly(t *testing.T) {
	testenv.NeedPrograms(t, "dovecot")
	dc := dovecot.Start(t, dovecot.Options{Users: map[string]string{"mia": "mia-pass"}})
	dir := filepath.Join(t.TempDir(), "data")
	imapAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	cfg := filepath.Join(t.TempDir(), "stepgate.yaml")
	yaml := fmt.Sprintf("two_step:\n  policy: deny\nldap:\n  listen: \"off\"\nimap:\n  listen: %s\n  upstream:\n    host: 127.0.0.1\n    port: %d\n",
		imapAddr, dc.Port())
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	login := func(secret string) error {
		c, err := imapclient.DialInsecure(imapAddr, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Login("mia", secret).Wait(); err != nil {
			return err
		}
		return c.Logout().Wait()
	}
	_, stop := serve(t, dir, "--config", cfg)
	defer stop()
	if err := login("mia-pass"); err == nil {
		t.Fatal("a mail account that has not enrolled signed in under policy deny")
	}
	var enrolled struct{ User, Secret string }
	r := must(t, run(t, dir, "", "--config", cfg, "user", "enroll", "mia", "--json"))
	if err := json.Unmarshal([]byte(r.stdout), &enrolled); err != nil || enrolled.User != "mia" {
		t.Fatalf("enroll mia: %v\n%s", err, r.stdout)
	}
	if u := listed(t, dir, "mia"); u["source"] != "mail" {
		t.Fatalf("user list shows mia as %v", u)
	}
	if left := 30 - time.Now().Unix()%30; left < 5 {
		time.Sleep(time.Duration(left)*time.Second + 100*time.Millisecond)
	}
	now := time.Now()
	must(t, run(t, dir, "", "user", "confirm", "mia", code(t, enrolled.Secret, now.Add(-30*time.Second))))
	if err := login("mia-pass" + code(t, enrolled.Secret, now)); err != nil {
		t.Fatalf("mia with password and code: %v", err)
	}
}
