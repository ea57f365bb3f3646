package account_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"

	"github.com/stepgate/stepgate/internal/account"
	"github.com/stepgate/stepgate/internal/delivery"
	"github.com/stepgate/stepgate/internal/notify"
	"github.com/stepgate/stepgate/internal/notify/notifytest"
	"github.com/stepgate/stepgate/internal/password"
	"github.com/stepgate/stepgate/internal/store"
	"github.com/stepgate/stepgate/internal/verifier"
	"github.com/stepgate/stepgate/internal/verifier/verifiertest"
)

// env is a real SQLite store with account actions on it; with mail, a real
// SMTP server on loopback receives the confirmation codes and alerts.
type env struct {
	st   *store.Store
	acc  *account.Service
	smtp *notifytest.SMTPServer
}

func newEnv(t *testing.T, withMail bool, change func(*delivery.Config)) *env {
	t.Helper()
	e := &env{st: verifiertest.New(t, verifiertest.Options{}).Store}
	cfg := delivery.DefaultConfig()
	if withMail {
		e.smtp = notifytest.NewSMTP(t, notifytest.SMTPOptions{Username: "relay", Password: "relay-pw"})
		pwFile := filepath.Join(t.TempDir(), "smtp-password")
		if err := os.WriteFile(pwFile, []byte("relay-pw\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		retries := 0
		cfg.Email = &notify.EmailConfig{
			SMTP: &notify.SMTPConfig{Host: e.smtp.Host, Port: e.smtp.Port, TLS: notify.TLSStartTLS, CAFile: e.smtp.CAFile,
				Username: "relay", PasswordFile: pwFile},
			From: "Example Mail <noreply@example.org>", Retries: &retries, Timeout: 5 * time.Second,
		}
	}
	if change != nil {
		change(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	opened := 0
	e.acc = account.New(e.st, account.Options{
		TOTP: verifier.DefaultTOTP, Issuer: "Example",
		Delivery: func() (*delivery.Delivery, func(), error) {
			d, err := delivery.New(e.st, nil, cfg, delivery.Options{Service: "Example"})
			if err != nil {
				return nil, nil, err
			}
			opened++
			return d, func() { opened--; d.Close() }, nil
		},
	})
	t.Cleanup(func() {
		if opened != 0 {
			t.Errorf("%d delivery(ies) left open by the account actions", opened)
		}
	})
	return e
}

func (e *env) add(t *testing.T, name string) {
	t.Helper()
	if _, err := e.acc.AddUser(context.Background(), account.NewUser{Name: name, Password: "classmate"}); err != nil {
		t.Fatal(err)
	}
}

func field(err error) string {
	var inv *account.InvalidError
	if errors.As(err, &inv) {
		return inv.Field
	}
	return ""
}

// TestNewUserCheck: a malformed request is refused before any store is
// touched, naming what was wrong; the phone number comes back in E.164.
func TestNewUserCheck(t *testing.T) {
	for _, c := range []struct {
		n     account.NewUser
		field string
	}{
		{account.NewUser{Name: "al ice"}, "name"},
		{account.NewUser{Name: "alice@example.org"}, "name"},
		{account.NewUser{Name: "alice", Email: "Alice <alice@example.org>"}, "email"},
		{account.NewUser{Name: "alice", Phone: "12345"}, "phone"},
		{account.NewUser{Name: "alice", Phone: "+44 12"}, "phone"},
		{account.NewUser{Name: "alice", Groups: []string{"ok", "not ok"}}, "group"},
	} {
		if _, err := c.n.Check(); field(err) != c.field {
			t.Errorf("Check(%+v) = %v; want an invalid %s", c.n, err, c.field)
		}
	}
	n, err := account.NewUser{Name: "alice", Email: "alice@example.org", Phone: "+44 (7911) 123-456", Groups: []string{"staff"}}.Check()
	if err != nil || n.Phone != "+447911123456" {
		t.Fatalf("Check = %+v, %v; want the phone as +447911123456", n, err)
	}
}

// TestAddUserAndPassword: the account is stored under its canonical name
// with a hash of its password, never the password; an empty password is
// refused; a new password replaces the old one and ends the sessions.
func TestAddUserAndPassword(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, false, nil)
	if _, err := e.acc.AddUser(ctx, account.NewUser{Name: "bob"}); field(err) != "password" {
		t.Fatalf("AddUser without a password: %v", err)
	}
	u, err := e.acc.AddUser(ctx, account.NewUser{Name: "ＡＬＩＣＥ", Phone: "+1 (415) 555-0132", Groups: []string{"staff"}, Password: "classmate"})
	if err != nil {
		t.Fatal(err)
	}
	got, err := e.st.User(ctx, "alice")
	if err != nil || got.ID != u.ID || got.Phone != "+14155550132" || strings.Contains(got.PasswordHash, "classmate") {
		t.Fatalf("stored %+v, %v", got, err)
	}
	if err := password.Verify(got.PasswordHash, "classmate"); err != nil {
		t.Fatalf("the stored hash does not verify the password: %v", err)
	}
	if err := e.acc.SetPassword(ctx, "alice", ""); field(err) != "password" {
		t.Fatalf("SetPassword to empty: %v", err)
	}
	if err := e.acc.SetPassword(ctx, "Alice", "new secret"); err != nil {
		t.Fatal(err)
	}
	now, _ := e.st.User(ctx, "alice")
	if password.Verify(now.PasswordHash, "new secret") != nil || now.Epoch == got.Epoch {
		t.Fatalf("after SetPassword: epoch %d -> %d, hash verifies: %v", got.Epoch, now.Epoch, password.Verify(now.PasswordHash, "new secret"))
	}
	list, err := e.acc.List(ctx)
	if err != nil || len(list) != 1 || list[0].Name != "alice" || list[0].TwoStep != "none" || list[0].Groups[0] != "staff" {
		t.Fatalf("List = %+v, %v", list, err)
	}
}

// TestDisableEnable: Disable says what the account was before; Enable of
// an account that is not disabled touches nothing (its sessions live on);
// an unknown name says so and is store.ErrNotFound.
func TestDisableEnable(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, false, nil)
	e.add(t, "alice")
	before, _ := e.st.User(ctx, "alice")
	if u, changed, err := e.acc.Enable(ctx, "alice"); err != nil || changed || u.Name != "alice" {
		t.Fatalf("Enable of an enabled account: %v, %v", changed, err)
	}
	if u, _ := e.st.User(ctx, "alice"); u.Epoch != before.Epoch {
		t.Fatal("enabling an enabled account moved its epoch (its sessions would end)")
	}
	for i, wasDisabled := range []bool{false, true} {
		u, err := e.acc.Disable(ctx, "ALICE")
		if err != nil || u.Disabled != wasDisabled {
			t.Fatalf("Disable #%d: %+v, %v", i+1, u, err)
		}
	}
	if _, changed, err := e.acc.Enable(ctx, "alice"); err != nil || !changed {
		t.Fatalf("Enable: %v, %v", changed, err)
	}
	if u, _ := e.st.User(ctx, "alice"); u.Disabled {
		t.Fatal("still disabled")
	}
	_, err := e.acc.Disable(ctx, "nobody")
	if !errors.Is(err, store.ErrNotFound) || !strings.Contains(err.Error(), `no account named "nobody"`) {
		t.Fatalf("Disable nobody: %v", err)
	}
	if err := e.acc.Delete(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.st.User(ctx, "alice"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("after Delete: %v", err)
	}
}

var confirmCode = regexp.MustCompile(`\bis (\d{6})\b`)

// TestFactorsSettleAndAlert runs a whole life: an e-mail method confirmed
// with the code mailed to it turns two-step on; an authenticator
// confirmed with its first code is announced to that address; turning
// two-step off is announced too, and every message went out through the
// real SMTP server.
func TestFactorsSettleAndAlert(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, true, nil)
	e.add(t, "alice")
	if _, err := e.acc.AddMethod(ctx, "alice", store.MethodEmail, "not an address"); field(err) != "address" {
		t.Fatalf("AddMethod with a bad address: %v", err)
	}
	m, err := e.acc.AddMethod(ctx, "alice", store.MethodEmail, "alice@Example.ORG")
	if err != nil || m.Address != "alice@example.org" {
		t.Fatalf("AddMethod: %+v, %v", m, err)
	}
	mails := e.smtp.WaitMails(t, 1)
	code := confirmCode.FindStringSubmatch(mails[0].Body())
	if code == nil {
		t.Fatalf("no code in %q", mails[0].Body())
	}
	res, err := e.acc.ConfirmMethod(ctx, "alice", code[1])
	if err != nil || res.TwoStep != store.TwoStepActive || res.AlertErr != nil {
		t.Fatalf("ConfirmMethod: %+v, %v", res, err)
	}
	ms, err := e.acc.Methods(ctx, "alice")
	if err != nil || len(ms) != 1 || !ms[0].Verified || !ms[0].Primary || ms[0].Verify == nil {
		t.Fatalf("Methods = %+v, %v", ms, err)
	}

	en, err := e.acc.Enroll(ctx, "alice", "phone")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.acc.ConfirmAuthenticator(ctx, "alice", "000000"); err == nil {
		t.Fatal("a wrong first code confirmed the authenticator")
	}
	first, err := totp.GenerateCode(en.Secret, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	n := len(e.smtp.Mails())
	ac, err := e.acc.ConfirmAuthenticator(ctx, "alice", first)
	if err != nil || ac.Label != "phone" || ac.TwoStep != store.TwoStepActive || ac.AlertErr != nil {
		t.Fatalf("ConfirmAuthenticator: %+v, %v", ac, err)
	}
	mails = e.smtp.WaitMails(t, n+1)
	if b := mails[n].Body(); !strings.Contains(b, `An authenticator "phone" was added to alice`) {
		t.Fatalf("alert: %q", b)
	}

	codes, err := e.acc.RecoveryCodes(ctx, "alice")
	if err != nil || len(codes) != 10 {
		t.Fatalf("RecoveryCodes = %v, %v", codes, err)
	}

	n = len(e.smtp.Mails())
	alertErr, err := e.acc.DisableTwoStep(ctx, "alice")
	if err != nil || alertErr != nil {
		t.Fatalf("DisableTwoStep: %v, %v", alertErr, err)
	}
	mails = e.smtp.WaitMails(t, n+1)
	if s := mails[n].Header("Subject"); s != "Security alert: two-step verification is off" {
		t.Fatalf("alert subject %q", s)
	}
	if u, _ := e.st.User(ctx, "alice"); u.TwoStep != store.TwoStepNone {
		t.Fatalf("two-step is %s after DisableTwoStep", u.TwoStep)
	}
}

// TestBackupPolicyKeepsTwoStepPending: with require_backup_method one
// authenticator leaves two-step pending, and a second factor turns it on.
func TestBackupPolicyKeepsTwoStepPending(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, false, func(c *delivery.Config) { c.RequireBackupMethod = true })
	e.add(t, "alice")
	confirm := func(label string) store.TwoStep {
		t.Helper()
		en, err := e.acc.Enroll(ctx, "alice", label)
		if err != nil {
			t.Fatal(err)
		}
		code, _ := totp.GenerateCode(en.Secret, time.Now())
		res, err := e.acc.ConfirmAuthenticator(ctx, "alice", code)
		if err != nil {
			t.Fatal(err)
		}
		if res.AlertErr != nil {
			t.Fatalf("alerts that are off are no failure: %v", res.AlertErr)
		}
		return res.TwoStep
	}
	if s := confirm("phone"); s != store.TwoStepPending {
		t.Fatalf("one factor under the backup policy: %s", s)
	}
	if s := confirm("tablet"); s != store.TwoStepActive {
		t.Fatalf("two factors: %s", s)
	}
}

// TestChangeStandsWhenDeliveryFails: when the delivery cannot be built
// (a broken configuration), turning two-step off still happens and the
// reason the alert did not go out is returned; actions that need the
// delivery fail without changing anything.
func TestChangeStandsWhenDeliveryFails(t *testing.T) {
	ctx := context.Background()
	st := verifiertest.New(t, verifiertest.Options{}).Store
	broken := errors.New("delivery.email.smtp.host: required")
	acc := account.New(st, account.Options{TOTP: verifier.DefaultTOTP, Issuer: "Example",
		Delivery: func() (*delivery.Delivery, func(), error) { return nil, nil, broken }})
	if _, err := acc.AddUser(ctx, account.NewUser{Name: "alice", Password: "classmate"}); err != nil {
		t.Fatal(err)
	}
	en, err := acc.Enroll(ctx, "alice", "")
	if err != nil || en.Label != "authenticator" {
		t.Fatalf("Enroll: %+v, %v", en, err)
	}
	if _, err := acc.AddMethod(ctx, "alice", store.MethodEmail, "alice@example.org"); !errors.Is(err, broken) {
		t.Fatalf("AddMethod: %v", err)
	}
	if _, err := acc.RecoveryCodes(ctx, "alice"); !errors.Is(err, broken) {
		t.Fatalf("RecoveryCodes: %v", err)
	}
	alertErr, err := acc.DisableTwoStep(ctx, "alice")
	if err != nil || !errors.Is(alertErr, broken) {
		t.Fatalf("DisableTwoStep: alert %v, err %v", alertErr, err)
	}
	if _, _, err := st.Account(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if as, _ := st.Authenticators(ctx, mustUser(t, st, "alice").ID, false); len(as) != 0 {
		t.Fatalf("%d authenticator(s) left after DisableTwoStep", len(as))
	}
	if _, err := account.New(st, account.Options{}).RecoveryCodes(ctx, "alice"); err == nil {
		t.Fatal("RecoveryCodes without a delivery")
	}
}

func mustUser(t *testing.T, st *store.Store, name string) *store.User {
	t.Helper()
	u, err := st.User(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
