package main_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/go-ldap/ldap/v3"

	"github.com/stepgate/stepgate/internal/testenv"
	"github.com/stepgate/stepgate/internal/testenv/dovecot"
)

// enrollConfirmedEarly adds name with password pw and confirms an
// authenticator with the previous time step's code, leaving the current
// and the next step's codes for the test. It returns the secret and the
// time whose step is the current one.
func enrollConfirmedEarly(t *testing.T, dir, name, pw string) (string, time.Time) {
	t.Helper()
	must(t, run(t, dir, pw+"\n", "user", "add", name, "--password-stdin"))
	var enrolled struct{ Secret string }
	if err := json.Unmarshal([]byte(must(t, run(t, dir, "", "user", "enroll", name, "--json")).stdout), &enrolled); err != nil {
		t.Fatal(err)
	}
	// The previous step is in the window only until the step rolls over:
	// start the confirmation well before that.
	if left := 30 - time.Now().Unix()%30; left < 5 {
		time.Sleep(time.Duration(left)*time.Second + 100*time.Millisecond)
	}
	now := time.Now()
	must(t, run(t, dir, "", "user", "confirm", name, code(t, enrolled.Secret, now.Add(-30*time.Second))))
	return enrolled.Secret, now
}

// listed returns how `user list --json` shows name.
func listed(t *testing.T, dir, name string) map[string]any {
	t.Helper()
	var users []map[string]any
	if err := json.Unmarshal([]byte(must(t, run(t, dir, "", "user", "list", "--json")).stdout), &users); err != nil {
		t.Fatal(err)
	}
	for _, u := range users {
		if u["name"] == name {
			return u
		}
	}
	t.Fatalf("user list --json has no %s: %v", name, users)
	return nil
}

// TestUserDisableClosesConnections: an enrolled user holds an LDAP
// connection (go-ldap, bound) and an IMAP connection spliced to a real
// Dovecot; `stepgate user disable` closes both within a bounded wait, the
// stored string and even a fresh code are refused while disabled, and
// after `user enable` the old string stays dead while a fresh
// password+code signs in again over LDAP (ldapwhoami) and IMAP.
func TestUserDisableClosesConnections(t *testing.T) {
	testenv.NeedPrograms(t, "ldapwhoami", "dovecot")
	dir := filepath.Join(t.TempDir(), "data")
	const pw = "classmate"
	// Three time steps in order, all within the default skew: the
	// confirming code, the device's stored string, the fresh sign-in.
	secret, now := enrollConfirmedEarly(t, dir, "alice", pw)
	stored := pw + code(t, secret, now)
	fresh := pw + code(t, secret, now.Add(30*time.Second))

	dc := dovecot.Start(t, dovecot.Options{Users: map[string]string{"alice": pw}})
	ldapAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	imapAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	_, stop := serve(t, dir, "--ldap-listen", ldapAddr, "--imap-listen", imapAddr, "--imap-upstream", dc.Addr())
	defer stop()

	dn := "uid=alice,ou=people,dc=example,dc=org"
	lc, err := ldap.DialURL("ldap://" + ldapAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer lc.Close()
	if err := lc.Bind(dn, stored); err != nil {
		t.Fatalf("LDAP bind with password+code: %v", err)
	}
	if _, err := lc.WhoAmI(nil); err != nil {
		t.Fatalf("Who am I? on the bound connection: %v", err)
	}

	ic, err := imapclient.DialInsecure(imapAddr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ic.Close()
	if err := ic.Login("alice", stored).Wait(); err != nil {
		t.Fatalf("IMAP login with the stored string: %v", err)
	}
	if _, err := ic.Select("INBOX", nil).Wait(); err != nil {
		t.Fatalf("SELECT through the splice: %v", err)
	}
	if r := must(t, run(t, dir, "", "session", "list", "--user", "alice")); !strings.Contains(r.stdout, "alice") {
		t.Fatalf("no session after the sign-ins:\n%s", r.stdout)
	}

	r := must(t, run(t, dir, "", "user", "disable", "alice"))
	if !strings.Contains(r.stdout, "disabled alice; the running server ended") {
		t.Fatalf("user disable with a running server: %q", r.stdout)
	}
	select {
	case <-ic.Closed():
	case <-time.After(10 * time.Second):
		t.Fatal("user disable did not close the spliced IMAP connection within 10s")
	}
	for i := 0; !lc.IsClosing(); i++ {
		if i == 200 {
			t.Fatal("user disable did not close the bound LDAP connection within 10s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if r := must(t, run(t, dir, "", "session", "list", "--user", "alice", "--json")); strings.TrimSpace(r.stdout) != "[]" {
		t.Fatalf("sessions left after user disable: %s", r.stdout)
	}
	if u := listed(t, dir, "alice"); u["disabled"] != true {
		t.Fatalf("user list --json after disable: %v", u)
	}
	if r := must(t, run(t, dir, "", "user", "list")); !strings.Contains(r.stdout, "person (disabled)") {
		t.Fatalf("user list after disable:\n%s", r.stdout)
	}

	if rc, out := ldapwhoami(t, ldapAddr, dn, stored); rc != 49 {
		t.Fatalf("the stored string over LDAP after disable: exit %d, want 49: %s", rc, out)
	}
	if err := imapLogin(t, imapAddr, stored); err == nil {
		t.Fatal("the stored string over IMAP after disable: login succeeded")
	}
	if rc, _ := ldapwhoami(t, ldapAddr, dn, fresh); rc != 49 {
		t.Fatalf("a fresh password+code while disabled: exit %d, want 49", rc)
	}

	r = must(t, run(t, dir, "", "user", "enable", "alice"))
	if !strings.Contains(r.stdout, "enabled alice") {
		t.Fatalf("user enable: %q", r.stdout)
	}
	if u := listed(t, dir, "alice"); u["disabled"] != false {
		t.Fatalf("user list --json after enable: %v", u)
	}
	if rc, out := ldapwhoami(t, ldapAddr, dn, fresh); rc != 0 || !strings.Contains(out, "dn:"+dn) {
		t.Fatalf("a fresh password+code after enable: exit %d: %s", rc, out)
	}
	if err := imapLogin(t, imapAddr, fresh); err != nil {
		t.Fatalf("the fresh string over IMAP after enable: %v", err)
	}
	if rc, _ := ldapwhoami(t, ldapAddr, dn, stored); rc != 49 {
		t.Fatalf("the string from before disable, after enable: exit %d, want 49 (sessions stay ended)", rc)
	}
	if r := must(t, run(t, dir, "", "user", "enable", "alice")); !strings.Contains(r.stdout, "not disabled; nothing changed") {
		t.Fatalf("user enable of an enabled account: %q", r.stdout)
	}
	// That second enable moved nothing: the fresh string's session lives.
	if rc, _ := ldapwhoami(t, ldapAddr, dn, fresh); rc != 0 {
		t.Fatalf("the fresh string after a second enable: exit %d", rc)
	}
}

// imapLogin signs in to stepgate's IMAP front end on a new connection
// and logs out.
func imapLogin(t *testing.T, addr, secret string) error {
	t.Helper()
	c, err := imapclient.DialInsecure(addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login("alice", secret).Wait(); err != nil {
		return err
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		return fmt.Errorf("SELECT after login: %w", err)
	}
	return c.Logout().Wait()
}

// TestUserDisableWithoutServer: the store change is the whole of it when
// no server runs; the command says so and succeeds, and an unknown name
// is a plain error with exit 1.
func TestUserDisableWithoutServer(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	const pw = "classmate"
	secret, now := enrollConfirmedEarly(t, dir, "alice", pw)

	r := must(t, run(t, dir, "", "user", "disable", "alice"))
	if !strings.Contains(r.stdout, "disabled alice; stepgate serve is not running") || r.stderr != "" {
		t.Fatalf("user disable without a server: %+v", r)
	}
	// Disabled: a right password and a fresh code are refused, with the
	// generic answer, and the code is not burnt by it.
	if r := run(t, dir, pw+code(t, secret, now), "check", "alice"); r.code != 1 || r.stderr != "deny: invalid credentials\n" {
		t.Fatalf("check while disabled: %+v", r)
	}
	if r := must(t, run(t, dir, "", "user", "disable", "alice")); !strings.Contains(r.stdout, "it was already") {
		t.Fatalf("disabling twice: %q", r.stdout)
	}
	must(t, run(t, dir, "", "user", "enable", "alice"))
	if r := run(t, dir, pw+code(t, secret, now), "check", "alice"); r.code != 0 {
		t.Fatalf("check after enable: %+v", r)
	}

	for _, verb := range []string{"disable", "enable"} {
		r := run(t, dir, "", "user", verb, "bob")
		if r.code != 1 || !strings.Contains(r.stderr, `no account named "bob"`) || strings.Contains(r.stderr, "Usage:") {
			t.Errorf("user %s of an unknown name: %+v", verb, r)
		}
	}
}

// TestControlSocketPermissionDenied runs the CLI as an unprivileged user
// against a root server whose data folder that user may traverse: it is
// told permission denied with the socket's owner and mode, not that the
// server is not running.
func TestControlSocketPermissionDenied(t *testing.T) {
	if os.Getuid() != 0 {
		skipIntegration(t, "the test must run as root to start serve as root and the CLI as another user")
	}
	prefix := unprivileged(t)
	dir := filepath.Join(t.TempDir(), "data")
	must(t, run(t, dir, "pw\n", "user", "add", "alice", "--password-stdin"))
	// Let the other user reach the socket's folder and the binary; the
	// socket itself stays root's 0600.
	for _, d := range []string{dir, filepath.Dir(dir), filepath.Dir(filepath.Dir(dir)), filepath.Dir(binary)} {
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	serve(t, dir, "--ldap-listen", "off", "--imap-listen", "off")

	r := runAs(t, prefix, dir, "session", "list")
	if r.code != 1 || !strings.Contains(r.stderr, "permission denied (control.sock is root's, mode 0600)") ||
		strings.Contains(r.stderr, "not running") {
		t.Fatalf("session list as another user: %+v", r)
	}
	// Root still gets through.
	must(t, run(t, dir, "", "session", "list"))

	// A data folder the user cannot enter is named as the obstacle.
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	r = runAs(t, prefix, dir, "session", "revoke", "--user", "alice")
	if r.code != 1 || !strings.Contains(r.stderr, "permission denied (the data folder "+dir+" is closed to this user") {
		t.Fatalf("session revoke through a closed data folder: %+v", r)
	}
}

func skipIntegration(t *testing.T, why string) {
	t.Helper()
	msg := "INTEGRATION TEST SKIPPED: " + why
	if testenv.Required() {
		t.Fatal(msg + "; STEPGATE_REQUIRE_INTEGRATION=1 makes this a failure")
	}
	t.Skip(msg)
}

// unprivileged returns a command prefix that runs a program as uid and
// gid 65534 (nobody), with setpriv or runuser, whichever works here.
func unprivileged(t *testing.T) []string {
	t.Helper()
	var tried []string
	for _, p := range [][]string{
		{"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"},
		{"runuser", "-u", "nobody", "--"},
	} {
		path, ok := testenv.LookPath(p[0])
		if !ok {
			tried = append(tried, p[0]+": not installed")
			continue
		}
		prefix := append([]string{path}, p[1:]...)
		out, err := exec.Command(prefix[0], append(prefix[1:], "id", "-u")...).CombinedOutput()
		if err == nil && strings.TrimSpace(string(out)) == "65534" {
			return prefix
		}
		tried = append(tried, fmt.Sprintf("%s: %v %s", p[0], err, bytes.TrimSpace(out)))
	}
	skipIntegration(t, "cannot run a program as an unprivileged user ("+strings.Join(tried, "; ")+")")
	return nil
}

// runAs is run with the binary started through prefix.
func runAs(t *testing.T, prefix []string, dir string, args ...string) result {
	t.Helper()
	return runVia(t, prefix, dir, "", args...)
}
