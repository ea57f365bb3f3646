package notify_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stepgate/stepgate/internal/notify"
	"github.com/stepgate/stepgate/internal/notify/notifytest"
	"github.com/stepgate/stepgate/internal/store"
)

// logBuffer is a slog handler target that tests read.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}
func (l *logBuffer) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

func newLog() (*slog.Logger, *logBuffer) {
	b := &logBuffer{}
	return slog.New(slog.NewJSONHandler(b, nil)), b
}

func caPool(t *testing.T, file string) *x509.CertPool {
	t.Helper()
	pem, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	p := x509.NewCertPool()
	p.AppendCertsFromPEM(pem)
	return p
}

func fast(retries int) notify.Retry {
	return notify.Retry{Timeout: 5 * time.Second, Retries: retries, Backoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond}
}

func TestSMTPStartTLSAuth(t *testing.T) {
	srv := notifytest.NewSMTP(t, notifytest.SMTPOptions{Username: "relay", Password: "s3cret"})
	tr, err := notify.NewSMTP(notify.SMTPOptions{Host: srv.Host, Port: srv.Port, TLS: notify.TLSStartTLS,
		RootCAs: caPool(t, srv.CAFile), Username: "relay", Password: "s3cret", From: "stepgate <noreply@example.org>"})
	if err != nil {
		t.Fatal(err)
	}
	log, logs := newLog()
	ch := notify.NewChannel(store.MethodEmail, "smtp", tr, fast(0), log)
	m := notify.Message{To: "alice@example.org", Subject: "Your code", Body: "Your code is 424242\n", Secrets: []string{"424242"}}
	if err := ch.Send(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	got := srv.WaitMails(t, 1)[0]
	if got.From != "noreply@example.org" || len(got.To) != 1 || got.To[0] != "alice@example.org" {
		t.Fatalf("envelope = %q -> %q", got.From, got.To)
	}
	if got.Header("Subject") != "Your code" || !strings.Contains(got.Body(), "424242") || got.Header("Auto-Submitted") != "auto-generated" {
		t.Fatalf("message = %q / %q", got.Header("Subject"), got.Body())
	}
	if srv.Auths() != 1 {
		t.Fatalf("AUTH used %d times, want 1", srv.Auths())
	}
	if strings.Contains(logs.String(), "424242") {
		t.Fatal("the code is in the log")
	}
}

func TestSMTPImplicitTLS(t *testing.T) {
	srv := notifytest.NewSMTP(t, notifytest.SMTPOptions{Implicit: true})
	tr, err := notify.NewSMTP(notify.SMTPOptions{Host: srv.Host, Port: srv.Port, TLS: notify.TLSImplicit,
		RootCAs: caPool(t, srv.CAFile), From: "noreply@example.org"})
	if err != nil {
		t.Fatal(err)
	}
	ch := notify.NewChannel(store.MethodEmail, "smtp", tr, fast(0), nil)
	if err := ch.Send(context.Background(), notify.Message{To: "bob@example.org", Subject: "s", Body: "b"}); err != nil {
		t.Fatal(err)
	}
	if got := srv.WaitMails(t, 1)[0]; got.To[0] != "bob@example.org" {
		t.Fatalf("to %q", got.To)
	}
}

func TestSMTPRetriesTemporaryFailure(t *testing.T) {
	srv := notifytest.NewSMTP(t, notifytest.SMTPOptions{FailFirst: 2})
	tr, err := notify.NewSMTP(notify.SMTPOptions{Host: srv.Host, Port: srv.Port, TLS: notify.TLSStartTLS,
		RootCAs: caPool(t, srv.CAFile), From: "noreply@example.org"})
	if err != nil {
		t.Fatal(err)
	}
	log, logs := newLog()
	m := notify.Message{To: "alice@example.org", Subject: "s", Body: "code 135790", Secrets: []string{"135790"}}
	// One retry is not enough for two failures...
	if err := notify.NewChannel(store.MethodEmail, "smtp", tr, fast(1), log).Send(context.Background(), m); err == nil {
		t.Fatal("delivered despite two temporary failures and one retry")
	} else if strings.Contains(err.Error(), "135790") || strings.Contains(err.Error(), "alice@") {
		t.Fatalf("the error shows the code or the address: %v", err)
	}
	if len(srv.Mails()) != 0 {
		t.Fatal("a refused message was kept")
	}
	// ...a further attempt goes through.
	if err := notify.NewChannel(store.MethodEmail, "smtp", tr, fast(1), log).Send(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	srv.WaitMails(t, 1)
	l := logs.String()
	if strings.Count(l, `"msg":"message delivery failed"`) != 2 || !strings.Contains(l, `"to":"a***@example.org"`) {
		t.Fatalf("want two failures logged with the address masked:\n%s", l)
	}
	if strings.Contains(l, "135790") || strings.Contains(l, "alice@") {
		t.Fatalf("the log shows the code or the address:\n%s", l)
	}
}

func TestSMTPUntrustedCertificate(t *testing.T) {
	srv := notifytest.NewSMTP(t, notifytest.SMTPOptions{})
	tr, err := notify.NewSMTP(notify.SMTPOptions{Host: srv.Host, Port: srv.Port, TLS: notify.TLSStartTLS, From: "noreply@example.org"})
	if err != nil {
		t.Fatal(err)
	}
	err = notify.NewChannel(store.MethodEmail, "smtp", tr, fast(0), nil).Send(context.Background(), notify.Message{To: "a@example.org", Body: "x"})
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("sent to a server with an unknown certificate: %v", err)
	}
}

func TestSMTPOptionsRefused(t *testing.T) {
	for _, o := range []notify.SMTPOptions{
		{Host: "127.0.0.1", Port: 25, TLS: notify.TLSNone, Username: "u", Password: "p", From: "a@example.org"},
		{Host: "127.0.0.1", Port: 25, TLS: "maybe", From: "a@example.org"},
		{Host: "", Port: 25, TLS: notify.TLSNone, From: "a@example.org"},
		{Host: "127.0.0.1", Port: 25, TLS: notify.TLSNone, From: "not an address"},
	} {
		if _, err := notify.NewSMTP(o); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
}
