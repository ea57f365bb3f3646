package server

import (
	"context"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"

	"github.com/stepgate/stepgate/internal/testenv"
)

// TestRetryingClientDoesNotLockItsOwnerOut: a mail client that retries as
// neomutt does (AUTHENTICATE PLAIN twice, then LOGIN) with a stored
// password+code that went stale, started three times (nine failed tries,
// Python's imaplib against stepgate in front of Dovecot), spends one unit
// of the budget: the owner then signs in with a fresh code at once.
func TestRetryingClientDoesNotLockItsOwnerOut(t *testing.T) {
	py := testenv.NeedProgram(t, "python3")
	curl := testenv.NeedProgram(t, "curl")
	a := startAlice(t, nil)
	host, port, _ := net.SplitHostPort(a.addrs.IMAP)
	stale, _ := totp.GenerateCode(a.key.Secret(), time.Now())
	stale = "classmate" + string('0'+(stale[0]-'0'+1)%10) + stale[1:] // a wrong code, kept by the device
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, py, "testdata/retrying_client.py", host, port, "alice", stale, "3").CombinedOutput()
	if err != nil {
		t.Fatalf("retrying client: %v\n%s", err, out)
	}
	if strings.Contains(string(out), "OK") || strings.Count(string(out), "NO") < 6 {
		t.Fatalf("the retrying client's tries: want them all refused:\n%s", out)
	}
	fresh, _ := totp.GenerateCode(a.key.Secret(), time.Now().Add(30*time.Second))
	if code, out := runCurl(t, curl, "alice", "classmate"+fresh, "imap://"+a.addrs.IMAP+"/INBOX?ALL"); code != 0 {
		t.Fatalf("the owner with a fresh code after the client's retries: curl exit %d (locked out by a stale device?):\n%s", code, out)
	}
}

// TestLockoutSaysSo: after five distinct wrong guesses, the owner's right
// password with a fresh code is refused with a message a person can act
// on, over LDAP (ldapwhoami prints the diagnostic) and IMAP (curl shows
// the NO text); nothing else ever gets that message.
func TestLockoutSaysSo(t *testing.T) {
	ldapwhoami := testenv.NeedProgram(t, "ldapwhoami")
	curl := testenv.NeedProgram(t, "curl")
	a := startAlice(t, nil)
	dn := "uid=alice,ou=people,dc=example,dc=org"
	whoami := func(secret string) (int, string) {
		cmd := exec.Command(ldapwhoami, "-x", "-H", "ldap://"+a.addrs.LDAP, "-D", dn, "-w", secret)
		cmd.Env = []string{"LDAPCONF=/dev/null", "LDAPRC=/dev/null"}
		out, err := cmd.CombinedOutput()
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode(), string(out)
		}
		return 0, string(out)
	}
	code, _ := totp.GenerateCode(a.key.Secret(), time.Now())
	for i := 0; i < 5; i++ {
		rc, out := whoami("guess" + string(rune('a'+i)) + code)
		if rc != 49 || strings.Contains(out, "Too many") {
			t.Fatalf("guess %d: exit %d: %s", i, rc, out)
		}
	}
	fresh, _ := totp.GenerateCode(a.key.Secret(), time.Now().Add(30*time.Second))
	rc, out := whoami("classmate" + fresh)
	if rc != 49 || !strings.Contains(out, "Too many failed sign-ins; try again after ") || !strings.Contains(out, " UTC") {
		t.Fatalf("right password and fresh code while locked out: exit %d, want 49 with the lockout message: %s", rc, out)
	}
	rc, out = runCurl(t, curl, "alice", "classmate"+fresh, "imap://"+a.addrs.IMAP+"/INBOX", "-v")
	if rc != 67 || !strings.Contains(out, "NO [AUTHENTICATIONFAILED] Too many failed sign-ins; try again after ") {
		t.Fatalf("curl while locked out: exit %d, want 67 with the lockout message:\n%s", rc, out)
	}
}

func runCurl(t *testing.T, curl, user, secret, url string, extra ...string) (int, string) {
	t.Helper()
	args := append([]string{"-sS", "--max-time", "20", "-u", user + ":" + secret}, extra...)
	out, err := exec.Command(curl, append(args, url)...).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), string(out)
	}
	if err != nil {
		t.Fatal(err)
	}
	return 0, string(out)
}
