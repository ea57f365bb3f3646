package main_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stepgate/stepgate/internal/credential"
	"github.com/stepgate/stepgate/internal/notify/notifytest"
)

// deliveryConfig writes a configuration that e-mails through srv.
func deliveryConfig(t *testing.T, srv *notifytest.SMTPServer, extra string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "stepgate.yaml")
	cfg := fmt.Sprintf(`delivery:
%s  email:
    from: "Example Mail <noreply@example.org>"
    retries: 0
    smtp: {host: %s, port: %d, tls: starttls, ca_file: %s}
`, extra, srv.Host, srv.Port, srv.CAFile)
	if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

var sixDigits = regexp.MustCompile(`\bis (\d{6})\b`)

// TestMethodsAndRecoveryCodes scripts delivery methods and recovery codes
// through the built binary, with a real SMTP server receiving the mail.
func TestMethodsAndRecoveryCodes(t *testing.T) {
	srv := notifytest.NewSMTP(t, notifytest.SMTPOptions{})
	cfg := deliveryConfig(t, srv, "")
	dir := filepath.Join(t.TempDir(), "data")
	cli := func(stdin string, args ...string) result {
		return run(t, dir, stdin, append([]string{"--config", cfg}, args...)...)
	}
	must(t, cli("pw\n", "user", "add", "alice", "--password-stdin"))

	if r := cli("", "user", "method", "add", "alice", "--phone", "12345"); r.code != 2 || !strings.Contains(r.stderr, "international form") {
		t.Fatalf("a bad phone number: %+v", r)
	}
	if r := cli("", "user", "method", "add", "alice"); r.code != 2 {
		t.Fatalf("neither --email nor --phone: %+v", r)
	}
	r := must(t, cli("", "user", "method", "add", "alice", "--email", "alice@example.org"))
	if !strings.Contains(r.stdout, "confirmation code sent to a***@example.org (method 1") {
		t.Fatalf("method add: %q", r.stdout)
	}
	m := srv.WaitMails(t, 1)[0]
	code := sixDigits.FindStringSubmatch(m.Body())
	if m.To[0] != "alice@example.org" || code == nil {
		t.Fatalf("confirmation mail to %q: %q", m.To, m.Body())
	}
	if r := cli("", "user", "method", "confirm", "alice", "000000"); r.code != 1 || !strings.Contains(r.stderr, "matches no pending method") {
		t.Fatalf("a wrong code: %+v", r)
	}
	r = must(t, cli("", "user", "method", "confirm", "alice", code[1]))
	if !strings.Contains(r.stdout, "method 1 (email a***@example.org) is verified") || !strings.Contains(r.stdout, "two-step verification is on for alice") {
		t.Fatalf("method confirm: %q", r.stdout)
	}
	if a := srv.WaitMails(t, 2)[1]; !strings.Contains(a.Header("Subject"), "new way to sign in") {
		t.Fatalf("alert %q", a.Header("Subject"))
	}

	var list []struct {
		ID       int64
		Kind     string
		Address  string
		Verified bool
		Primary  bool
	}
	if err := json.Unmarshal([]byte(must(t, cli("", "user", "method", "list", "alice", "--json")).stdout), &list); err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].Address != "alice@example.org" || !list[0].Verified || !list[0].Primary {
		t.Fatalf("method list --json = %+v", list)
	}
	if r := cli("", "user", "method", "remove", "alice", "1"); r.code != 2 || !strings.Contains(r.stderr, "--yes") {
		t.Fatalf("remove without --yes: %+v", r)
	}
	if r := cli("", "user", "method", "remove", "alice", "1", "--yes"); r.code != 1 || !strings.Contains(r.stderr, "only second factor") {
		t.Fatalf("removing the only factor: %+v", r)
	}

	r = must(t, cli("", "user", "recovery-codes", "alice"))
	var codes []string
	for _, f := range strings.Fields(r.stdout) {
		if credential.IsRecoveryCode(f) {
			codes = append(codes, f)
		}
	}
	if len(codes) != 10 {
		t.Fatalf("recovery-codes printed %d codes:\n%s", len(codes), r.stdout)
	}
	// The database holds none of them.
	db, err := os.ReadFile(filepath.Join(dir, "stepgate.db"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range codes {
		if strings.Contains(string(db), c) {
			t.Fatalf("the database holds recovery code %s", c)
		}
	}

	must(t, cli("", "user", "disable-2sv", "alice", "--yes"))
	if a := srv.WaitMails(t, 3)[2]; !strings.Contains(a.Header("Subject"), "two-step verification is off") {
		t.Fatalf("alert %q", a.Header("Subject"))
	}
}

// With require_backup_method, one authenticator leaves two-step pending.
func TestRequireBackupMethodCLI(t *testing.T) {
	srv := notifytest.NewSMTP(t, notifytest.SMTPOptions{})
	cfg := deliveryConfig(t, srv, "  require_backup_method: true\n")
	dir := filepath.Join(t.TempDir(), "data")
	cli := func(stdin string, args ...string) result {
		return run(t, dir, stdin, append([]string{"--config", cfg}, args...)...)
	}
	must(t, cli("pw\n", "user", "add", "bob", "--password-stdin"))
	var enrolled struct{ Secret string }
	if err := json.Unmarshal([]byte(must(t, cli("", "user", "enroll", "bob", "--json")).stdout), &enrolled); err != nil {
		t.Fatal(err)
	}
	r := must(t, cli("", "user", "confirm", "bob", code(t, enrolled.Secret, time.Now())))
	if !strings.Contains(r.stdout, "not complete") {
		t.Fatalf("confirm under require_backup_method: %q", r.stdout)
	}
	var users []map[string]any
	json.Unmarshal([]byte(must(t, cli("", "user", "list", "--json")).stdout), &users)
	if len(users) != 1 || users[0]["two_step"] != "pending" {
		t.Fatalf("user list = %v", users)
	}
	must(t, cli("", "user", "method", "add", "bob", "--email", "bob@example.org"))
	c := sixDigits.FindStringSubmatch(srv.WaitMails(t, 1)[0].Body())
	if c == nil {
		t.Fatal("no confirmation code")
	}
	if r := must(t, cli("", "user", "method", "confirm", "bob", c[1])); !strings.Contains(r.stdout, "two-step verification is on for bob") {
		t.Fatalf("confirming the backup: %q", r.stdout)
	}
}
