package delivery_test

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stepgate/stepgate/internal/delivery"
	"github.com/stepgate/stepgate/internal/notify"
	"github.com/stepgate/stepgate/internal/verifier"
)

// No code and no phone number in clear in the logs (operational and
// audit) or in the database files.
func TestNoSecretsInLogsOrFiles(t *testing.T) {
	r := newRig(t, rigOptions{})
	ctx := context.Background()
	r.e.AddUser(t, "pam", "pampw")
	const phone = "+14155550141"
	r.addPhone(t, "pam", phone)
	r.addEmail(t, "pam", "pam@example.org", 1)
	secrets := []string{}
	for _, m := range r.gw.messages() {
		secrets = append(secrets, find(t, smsCode, m.Message))
	}

	want(t, r.verify("pam", "pampw", remote), verifier.Deny, verifier.ReasonCodeSent)
	msgs := r.gw.messages()
	code := find(t, smsCode, msgs[len(msgs)-1].Message)
	secrets = append(secrets, code)
	want(t, r.verify("pam", "pampw"+code, remote), verifier.Allow, verifier.ReasonCode)

	codes, err := r.d.Recovery.Generate(ctx, "pam")
	if err != nil {
		t.Fatal(err)
	}
	secrets = append(secrets, codes...)
	want(t, r.verify("pam", "pampw"+codes[3], "198.51.100.9"), verifier.Allow, verifier.ReasonCode)

	// A failing gateway echoes what it got in its error page.
	r.e.Clock.Advance(2 * time.Minute)
	r.gw.mu.Lock()
	r.gw.fail = func(int) int { return http.StatusBadGateway }
	r.gw.mu.Unlock()
	want(t, r.verify("pam", "pampw", remote), verifier.Deny, verifier.ReasonNoCode)
	msgs = r.gw.messages()
	secrets = append(secrets, find(t, smsCode, strings.TrimPrefix(msgs[len(msgs)-1].Message, "FAILED ")))
	r.d.Close()

	logs := r.log.String() + r.e.AuditLog()
	for _, want := range []string{"***-***-0141", `"msg":"security code sent"`, `"msg":"recovery code used"`, `"msg":"message delivery failed"`} {
		if !strings.Contains(logs, want) {
			t.Fatalf("the log lacks %s:\n%s", want, logs)
		}
	}
	clear := append([]string{phone, strings.TrimPrefix(phone, "+"), "pampw"}, secrets...)
	for _, s := range clear {
		if strings.Contains(logs, s) {
			t.Fatalf("the log holds %q:\n%s", s, logs)
		}
	}
	err = filepath.Walk(r.e.Dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, s := range append([]string{phone, strings.TrimPrefix(phone, "+")}, secrets...) {
			if strings.Contains(string(b), s) {
				t.Errorf("%s holds %q in clear", p, s)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestConfigValidate(t *testing.T) {
	dir := t.TempDir()
	short := filepath.Join(dir, "short-key")
	os.WriteFile(short, []byte("tiny\n"), 0o600)
	neg := -1
	c := delivery.DefaultConfig()
	c.Methods = append(c.Methods, "pigeon")
	c.PhoneRegion = "XX"
	c.Codes.Lifetime = time.Second
	c.Codes.PerHour = 1000
	c.Email = &notify.EmailConfig{
		SMTP: &notify.SMTPConfig{Host: "mail.example.org", TLS: "none", Username: "u", PasswordFile: filepath.Join(dir, "missing")},
		From: "not an address", Body: "{{.Nope}}", Retries: &neg,
	}
	c.SMS = &notify.SMSConfig{
		Webhook: &notify.WebhookConfig{URL: "http://gateway.example.org/send", KeyFile: short},
		Command: &notify.CommandConfig{Path: "gammu-smsd-inject"},
		Body:    "no code",
	}
	err := c.Validate()
	if err == nil {
		t.Fatal("a bad config passed")
	}
	for _, key := range []string{
		"delivery.methods[2]: \"pigeon\"", "delivery.phone_region", "delivery.codes.lifetime", "delivery.codes.per_hour",
		"delivery.email.from", "delivery.email.smtp.tls", "delivery.email.smtp.password_file", "delivery.email.body",
		"delivery.email.retries", "delivery.sms: set exactly one of webhook and command", "delivery.sms.webhook.url",
		"delivery.sms.webhook.key_file", "delivery.sms.command.path", "delivery.sms.body",
	} {
		if !strings.Contains(err.Error(), key) {
			t.Errorf("no error for %s in:\n%v", key, err)
		}
	}
	var ke *delivery.KeyError
	if !errors.As(err, &ke) {
		t.Fatalf("errors are not *KeyError: %T", err)
	}

	// The defaults pass, with nothing set up to send.
	d := delivery.DefaultConfig()
	if err := d.Validate(); err != nil || d.Enabled() {
		t.Fatalf("defaults: %v, enabled %v", err, d.Enabled())
	}
	// So does a zero Config, which gets the defaults filled in.
	var z delivery.Config
	if err := z.Validate(); err != nil || z.Codes.Lifetime != 10*time.Minute || len(z.Methods) != 2 {
		t.Fatalf("zero config: %v, %+v", err, z)
	}
}
