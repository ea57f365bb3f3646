package notify_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stepgate/stepgate/internal/notify"
	"github.com/stepgate/stepgate/internal/notify/notifytest"
	"github.com/stepgate/stepgate/internal/seal"
	"github.com/stepgate/stepgate/internal/store"
)

func openStore(t *testing.T) *store.Store {
	t.Helper()
	dir := t.TempDir()
	sealer, err := seal.LoadOrCreate(filepath.Join(dir, "sealing.key"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(context.Background(), filepath.Join(dir, "stepgate.db"), sealer, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func addMethod(t *testing.T, st *store.Store, user string, kind store.MethodKind, addr string, verified bool) {
	t.Helper()
	m, _, err := st.AddMethod(context.Background(), user, kind, addr)
	if err != nil {
		t.Fatal(err)
	}
	if verified {
		if err := st.VerifyMethod(context.Background(), m.ID); err != nil {
			t.Fatal(err)
		}
	}
}

func TestAlerts(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	if _, err := st.AddUser(ctx, store.NewUser{Name: "alice", PasswordHash: "h"}); err != nil {
		t.Fatal(err)
	}
	addMethod(t, st, "alice", store.MethodEmail, "alice@example.org", true)
	addMethod(t, st, "alice", store.MethodEmail, "alice@home.example", true)
	addMethod(t, st, "alice", store.MethodEmail, "unverified@example.org", false)
	addMethod(t, st, "alice", store.MethodSMS, "+447700900123", true)

	srv := notifytest.NewSMTP(t, notifytest.SMTPOptions{})
	tr, err := notify.NewSMTP(notify.SMTPOptions{Host: srv.Host, Port: srv.Port, TLS: notify.TLSStartTLS,
		RootCAs: caPool(t, srv.CAFile), From: "noreply@example.org"})
	if err != nil {
		t.Fatal(err)
	}
	email := notify.NewChannel(store.MethodEmail, "smtp", tr, fast(0), nil)
	cfg := notify.DefaultAlerts
	cfg.LockedOut = false
	a := notify.NewAlerter(st, email, cfg, notify.AlerterOptions{Service: "Example Mail"})

	// Synchronous: to every verified address, except the one skipped.
	n, err := a.Send(ctx, notify.Alert{Event: notify.EventCodeSent, User: "ALICE", Remote: "203.0.113.5",
		Detail: "the phone ***-***-0123", Skip: "alice@home.example"})
	if err != nil || n != 1 {
		t.Fatalf("Send = %d, %v; want 1 address", n, err)
	}
	got := srv.WaitMails(t, 1)[0]
	if got.To[0] != "alice@example.org" || !strings.Contains(got.Header("Subject"), "Example Mail") ||
		!strings.Contains(got.Body(), "203.0.113.5") || !strings.Contains(got.Body(), "***-***-0123") {
		t.Fatalf("alert: to %q, subject %q, body %q", got.To, got.Header("Subject"), got.Body())
	}

	// Turned off: nothing goes out.
	if _, err := a.Send(ctx, notify.Alert{Event: notify.EventLockedOut, User: "alice"}); !errors.Is(err, notify.ErrAlertsOff) {
		t.Fatalf("a disabled alert: %v", err)
	}
	a.UserLockedOut(ctx, "alice", time.Now())

	// Posted alerts go out in the background; Close waits for them.
	a.Post(notify.Alert{Event: notify.EventTwoStepDisabled, User: "alice"})
	a.Post(notify.Alert{Event: notify.EventMethodAdded, User: "nobody"})
	a.Close()
	mails := srv.Mails()
	if len(mails) != 3 {
		t.Fatalf("%d mails, want 3 (1 code_sent + 2 two_step_disabled)", len(mails))
	}
	for _, m := range mails[1:] {
		if !strings.Contains(m.Header("Subject"), "two-step verification is off") {
			t.Fatalf("unexpected alert %q", m.Header("Subject"))
		}
	}
	a.Post(notify.Alert{Event: notify.EventTwoStepDisabled, User: "alice"}) // after Close: dropped, no panic

	// Without e-mail set up nothing is enabled.
	none := notify.NewAlerter(st, nil, notify.DefaultAlerts, notify.AlerterOptions{})
	defer none.Close()
	if none.Enabled(notify.EventCodeSent) {
		t.Fatal("alerts enabled without e-mail")
	}
}

func TestTemplates(t *testing.T) {
	tm, err := notify.ParseTemplates("", "", "")
	if err != nil {
		t.Fatal(err)
	}
	d := notify.CodeData{Service: "stepgate", User: "alice", Code: "314159", Minutes: 10, Remote: "192.0.2.1", Time: "now", Separator: ";"}
	m, err := tm.Code(store.MethodEmail, "alice@example.org", d)
	if err != nil || !strings.Contains(m.Body, "314159") || !strings.Contains(m.Body, `after ";"`) || m.Subject == "" || m.Secrets[0] != "314159" {
		t.Fatalf("email = %+v, %v", m, err)
	}
	m, err = tm.Code(store.MethodSMS, "+447700900123", d)
	if err != nil || !strings.HasPrefix(m.Body, "314159 is your stepgate security code") || m.Subject != "" {
		t.Fatalf("sms = %+v, %v", m, err)
	}
	for _, bad := range [][3]string{{"{{.Nope}}", "", ""}, {"", "{{.Code", ""}, {"", "", "no code here"}} {
		if _, err := notify.ParseTemplates(bad[0], bad[1], bad[2]); err == nil {
			t.Errorf("templates %q accepted", bad)
		}
	}
	c := notify.Confirmation(store.MethodSMS, "+447700900123", d)
	if !strings.Contains(c.Body, "314159") {
		t.Fatalf("confirmation = %+v", c)
	}
}

func TestMask(t *testing.T) {
	for in, want := range map[string]string{"+447700900123": "***-***-0123", "+1": "***-***-****"} {
		if got := notify.MaskPhone(in); got != want {
			t.Errorf("MaskPhone(%q) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[string]string{"alice@example.org": "a***@example.org", "broken": "***"} {
		if got := notify.MaskEmail(in); got != want {
			t.Errorf("MaskEmail(%q) = %q, want %q", in, got, want)
		}
	}
}
