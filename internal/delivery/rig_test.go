package delivery_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/stepgate/stepgate/internal/delivery"
	"github.com/stepgate/stepgate/internal/notify"
	"github.com/stepgate/stepgate/internal/notify/notifytest"
	"github.com/stepgate/stepgate/internal/session"
	"github.com/stepgate/stepgate/internal/store"
	"github.com/stepgate/stepgate/internal/verifier"
	"github.com/stepgate/stepgate/internal/verifier/verifiertest"
)

var t0 = time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)

// logBuffer collects what the delivery logs, for the tests to search.
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

// gateway is an SMS gateway on loopback: it checks each body's signature
// and keeps the messages; fail decides the status of request n (from 1).
type gateway struct {
	key  []byte
	mu   sync.Mutex
	msgs []notify.WebhookBody
	n    int
	fail func(n int) int
	srv  *httptest.Server
}

func newGateway(t testing.TB) *gateway {
	g := &gateway{key: []byte("gateway-signing-key-0123456789")}
	g.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		g.mu.Lock()
		defer g.mu.Unlock()
		g.n++
		if r.Header.Get("X-Stepgate-Signature") != notify.Sign(g.key, body) {
			t.Errorf("webhook request with a bad signature")
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		var b notify.WebhookBody
		if err := json.Unmarshal(body, &b); err != nil {
			t.Errorf("webhook body: %v", err)
		}
		b.Message += "\n" // kept as sent, plus a line end for the regexps
		if g.fail != nil {
			if code := g.fail(g.n); code != 0 {
				w.WriteHeader(code)
				g.msgs = append(g.msgs, notify.WebhookBody{To: b.To, Message: "FAILED " + b.Message})
				return
			}
		}
		g.msgs = append(g.msgs, b)
	}))
	t.Cleanup(g.srv.Close)
	return g
}

func (g *gateway) messages() []notify.WebhookBody {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]notify.WebhookBody(nil), g.msgs...)
}

// rig is a real verifier with delivery wired in, a real SMTP server and a
// real SMS gateway.
type rig struct {
	e    *verifiertest.Env
	d    *delivery.Delivery
	smtp *notifytest.SMTPServer
	gw   *gateway
	log  *logBuffer
	cfg  delivery.Config
}

type rigOptions struct {
	config   func(*delivery.Config)
	verifier func(*verifier.Config)
	sessions func(*session.Config)
}

func newRig(t testing.TB, o rigOptions) *rig {
	t.Helper()
	dir := t.TempDir()
	smtp := notifytest.NewSMTP(t, notifytest.SMTPOptions{Username: "relay", Password: "relay-pw"})
	gw := newGateway(t)
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	retries := 1
	cfg := delivery.DefaultConfig()
	cfg.Email = &notify.EmailConfig{
		SMTP: &notify.SMTPConfig{Host: smtp.Host, Port: smtp.Port, TLS: notify.TLSStartTLS, CAFile: smtp.CAFile,
			Username: "relay", PasswordFile: write("smtp-password", "relay-pw\n")},
		From: "Example Mail <noreply@example.org>", Retries: &retries, Backoff: 10 * time.Millisecond, Timeout: 5 * time.Second,
	}
	cfg.SMS = &notify.SMSConfig{
		Webhook: &notify.WebhookConfig{URL: gw.srv.URL + "/sms", KeyFile: write("webhook-key", string(gw.key)+"\n")},
		Retries: &retries, Backoff: 10 * time.Millisecond, Timeout: 2 * time.Second,
	}
	if o.config != nil {
		o.config(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	r := &rig{smtp: smtp, gw: gw, log: &logBuffer{}, cfg: cfg}
	clock := verifiertest.NewClock(t0)
	r.e = verifiertest.New(t, verifiertest.Options{
		Clock:         clock,
		SessionConfig: o.sessions,
		Configure: func(vc *verifier.Config) {
			if o.verifier != nil {
				o.verifier(vc)
			}
			d, err := delivery.New(vc.Store.(*store.Store), vc.Sessions, cfg, delivery.Options{Rule: vc.Rule, Service: "Example Mail",
				Log: slog.New(slog.NewJSONHandler(r.log, &slog.HandlerOptions{Level: slog.LevelDebug})), Now: clock.Now})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { d.Close() })
			d.Configure(vc)
			r.d = d
		},
	})
	return r
}

func (r *rig) verify(user, secret, remote string) verifier.Decision {
	return r.e.Verifier.Verify(context.Background(), verifier.Attempt{Protocol: "ldap", User: user, Secret: secret, Remote: remote})
}

var (
	mailCode    = regexp.MustCompile(`security code is (\d{6,8})\b`)
	confirmCode = regexp.MustCompile(`\bis (\d{6})\b`)
	smsCode     = regexp.MustCompile(`^(\d{6,8}) `)
)

// mail waits for the n-th message (from 1) and returns it.
func (r *rig) mail(t *testing.T, n int) notifytest.Mail {
	t.Helper()
	return r.smtp.WaitMails(t, n)[n-1]
}

func find(t testing.TB, re *regexp.Regexp, s string) string {
	t.Helper()
	m := re.FindStringSubmatch(s)
	if m == nil {
		t.Fatalf("no code in %q", s)
	}
	return m[1]
}

// addEmail adds and confirms an e-mail method, reading the code from the
// n-th mail.
func (r *rig) addEmail(t *testing.T, user, addr string, n int) *store.Method {
	t.Helper()
	ctx := context.Background()
	if _, err := r.d.Methods.Add(ctx, user, store.MethodEmail, addr); err != nil {
		t.Fatal(err)
	}
	c, err := r.d.Methods.Confirm(ctx, user, find(t, confirmCode, r.mail(t, n).Body()))
	if err != nil {
		t.Fatal(err)
	}
	r.refresh(t)
	return c.Method
}

// addPhone adds and confirms a phone, reading the code from the gateway.
func (r *rig) addPhone(t *testing.T, user, phone string) *store.Method {
	t.Helper()
	ctx := context.Background()
	if _, err := r.d.Methods.Add(ctx, user, store.MethodSMS, phone); err != nil {
		t.Fatal(err)
	}
	msgs := r.gw.messages()
	c, err := r.d.Methods.Confirm(ctx, user, find(t, smsCode, msgs[len(msgs)-1].Message))
	if err != nil {
		t.Fatal(err)
	}
	r.refresh(t)
	return c.Method
}

func (r *rig) refresh(t testing.TB) {
	t.Helper()
	if _, err := r.e.Verifier.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func want(t testing.TB, d verifier.Decision, res verifier.Result, reason verifier.Reason) {
	t.Helper()
	if d.Result != res || d.Reason != reason {
		t.Fatalf("decision = %s/%s (%q), want %s/%s", d.Result, d.Reason, d.Message, res, reason)
	}
}
