package server

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stepgate/stepgate/internal/config"
	"github.com/stepgate/stepgate/internal/datadir"
	"github.com/stepgate/stepgate/internal/notify"
	"github.com/stepgate/stepgate/internal/notify/notifytest"
	"github.com/stepgate/stepgate/internal/password"
	"github.com/stepgate/stepgate/internal/store"
	"github.com/stepgate/stepgate/internal/testenv"
	"github.com/stepgate/stepgate/internal/testenv/dovecot"
)

// TestSentCodeThroughLDAPAndIMAP: an old device signs in with the
// password alone; a code arrives by e-mail (a real SMTP server); the
// device signs in with password+code, through the real LDAP front end
// (ldapwhoami) and the real IMAP front end (curl, in front of Dovecot).
func TestSentCodeThroughLDAPAndIMAP(t *testing.T) {
	ldapwhoami := testenv.NeedProgram(t, "ldapwhoami")
	curl := testenv.NeedProgram(t, "curl")
	t.Setenv(datadir.KeyFileEnv, "")
	smtp := notifytest.NewSMTP(t, notifytest.SMTPOptions{})
	dc := dovecot.Start(t, dovecot.Options{Users: map[string]string{"alice": "classmate", "bob": "bobsecret"}})
	dir := datadir.New(filepath.Join(t.TempDir(), "data"))

	// Accounts with a verified e-mail address and no authenticator app.
	st, err := dir.Open(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for name, pw := range map[string]string{"alice": "classmate", "bob": "bobsecret"} {
		h, _ := password.Hash(pw)
		if _, err := st.AddUser(context.Background(), store.NewUser{Name: name, PasswordHash: h}); err != nil {
			t.Fatal(err)
		}
		m, _, err := st.AddMethod(context.Background(), name, store.MethodEmail, name+"@example.org")
		if err != nil {
			t.Fatal(err)
		}
		if err := st.VerifyMethod(context.Background(), m.ID); err != nil {
			t.Fatal(err)
		}
		if err := st.SetTwoStep(context.Background(), name, store.TwoStepActive); err != nil {
			t.Fatal(err)
		}
	}
	st.Close()

	_, addrs, _ := startWith(t, dir, false, nil, func(c *config.Config) {
		c.LDAP.Listen, c.IMAP.Listen = "127.0.0.1:0", "127.0.0.1:0"
		c.IMAP.Upstream = &config.IMAPUpstream{Host: "127.0.0.1", Port: dc.Port(), TLS: "none"}
		retries := 0
		c.Delivery.Email = &notify.EmailConfig{From: "stepgate <noreply@example.org>", Retries: &retries,
			SMTP: &notify.SMTPConfig{Host: smtp.Host, Port: smtp.Port, TLS: notify.TLSStartTLS, CAFile: smtp.CAFile}}
	})
	codeIn := regexp.MustCompile(`security code is (\d{6})\b`)
	runCmd := func(path string, args ...string) (int, string) {
		cmd := exec.Command(path, args...)
		cmd.Env = append(os.Environ(), "LDAPCONF=/dev/null", "LDAPRC=/dev/null")
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode(), string(out)
		} else if err != nil {
			t.Fatal(err)
		}
		return 0, string(out)
	}

	// LDAP.
	dn := "uid=alice,ou=people,dc=example,dc=org"
	rc, out := runCmd(ldapwhoami, "-x", "-H", "ldap://"+addrs.LDAP, "-D", dn, "-w", "classmate")
	if rc != 49 || !strings.Contains(out, "Security code sent") {
		t.Fatalf("ldapwhoami with the password alone: exit %d: %s", rc, out)
	}
	mail := smtp.WaitMails(t, 1)[0]
	m := codeIn.FindStringSubmatch(mail.Body())
	if m == nil || !strings.Contains(mail.Header("To"), "alice@example.org") {
		t.Fatalf("no code in the mail to %s:\n%s", mail.Header("To"), mail.Body())
	}
	if rc, out := runCmd(ldapwhoami, "-x", "-H", "ldap://"+addrs.LDAP, "-D", dn, "-w", "classmate"+m[1]); rc != 0 || !strings.Contains(out, "dn:"+dn) {
		t.Fatalf("ldapwhoami with the sent code: exit %d: %s", rc, out)
	}

	// IMAP: the same for bob, whose mail client shows the NO text.
	url := "imap://" + addrs.IMAP + "/INBOX"
	rc, out = runCmd(curl, "-v", "-sS", "--max-time", "20", "-u", "bob:bobsecret", url)
	if rc != 67 || !strings.Contains(out, "NO [AUTHENTICATIONFAILED] Security code sent") {
		t.Fatalf("curl with the password alone: exit %d: %s", rc, out)
	}
	mails := smtp.WaitMails(t, 2)
	var bobs string
	for _, ml := range mails {
		if strings.Contains(ml.Header("To"), "bob@example.org") && codeIn.MatchString(ml.Body()) {
			bobs = codeIn.FindStringSubmatch(ml.Body())[1]
		}
	}
	if bobs == "" {
		t.Fatal("no code mailed to bob")
	}
	if rc, out := runCmd(curl, "-sS", "--max-time", "20", "-u", "bob:bobsecret"+bobs, url+"?ALL"); rc != 0 || !strings.Contains(out, "SEARCH") {
		t.Fatalf("curl with the sent code: exit %d: %s", rc, out)
	}
	if b, _ := os.ReadFile(dir.DB()); bytes.Contains(b, []byte(m[1])) {
		t.Error("a sent code is in the database in clear")
	}
}
