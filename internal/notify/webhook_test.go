package notify_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stepgate/stepgate/internal/notify"
	"github.com/stepgate/stepgate/internal/store"
)

// gateway is a real HTTP server on loopback standing in for an SMS
// gateway; status decides each answer.
type gateway struct {
	mu     sync.Mutex
	bodies [][]byte
	sigs   []string
	status func(n int) int // n counts requests from 1; 0 means hang
	srv    *httptest.Server
}

func newGateway(t *testing.T, status func(n int) int) *gateway {
	g := &gateway{status: status}
	g.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		g.mu.Lock()
		g.bodies = append(g.bodies, b)
		g.sigs = append(g.sigs, r.Header.Get("X-Stepgate-Signature"))
		n := len(g.bodies)
		g.mu.Unlock()
		code := g.status(n)
		if code == 0 {
			<-r.Context().Done() // hang until the client gives up
			return
		}
		w.WriteHeader(code)
	}))
	t.Cleanup(g.srv.Close)
	return g
}

func (g *gateway) requests() ([][]byte, []string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([][]byte(nil), g.bodies...), append([]string(nil), g.sigs...)
}

var hookKey = []byte("0123456789abcdef-webhook-key")

func hook(t *testing.T, url string) *notify.Webhook {
	t.Helper()
	w, err := notify.NewWebhook(notify.WebhookOptions{URL: url, Key: hookKey})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func TestWebhookSignedPost(t *testing.T) {
	g := newGateway(t, func(int) int { return http.StatusAccepted })
	log, logs := newLog()
	ch := notify.NewChannel(store.MethodSMS, "webhook", hook(t, g.srv.URL+"/send"), fast(2), log)
	m := notify.Message{To: "+447700900123", Body: "246810 is your code", Secrets: []string{"246810"}}
	if err := ch.Send(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	bodies, sigs := g.requests()
	if len(bodies) != 1 {
		t.Fatalf("%d requests, want 1", len(bodies))
	}
	if sigs[0] != notify.Sign(hookKey, bodies[0]) || !strings.HasPrefix(sigs[0], "sha256=") || len(sigs[0]) != 7+64 {
		t.Fatalf("signature %q does not sign the body", sigs[0])
	}
	if sigs[0] == notify.Sign([]byte("another key, 16 bytes+"), bodies[0]) {
		t.Fatal("the signature does not depend on the key")
	}
	var got notify.WebhookBody
	if err := json.Unmarshal(bodies[0], &got); err != nil {
		t.Fatal(err)
	}
	if got.To != "+447700900123" || got.Message != "246810 is your code" || got.Time.IsZero() {
		t.Fatalf("body = %+v", got)
	}
	if l := logs.String(); strings.Contains(l, "246810") || strings.Contains(l, "7700900123") {
		t.Fatalf("log shows the code or the number:\n%s", l)
	}
}

func TestWebhookRetriesThenFailsCleanly(t *testing.T) {
	g := newGateway(t, func(int) int { return http.StatusInternalServerError })
	log, logs := newLog()
	ch := notify.NewChannel(store.MethodSMS, "webhook", hook(t, g.srv.URL), fast(2), log)
	err := ch.Send(context.Background(), notify.Message{To: "+447700900123", Body: "975310", Secrets: []string{"975310"}})
	if err == nil {
		t.Fatal("a gateway answering 500 took the message")
	}
	if bodies, _ := g.requests(); len(bodies) != 3 {
		t.Fatalf("%d requests, want 3 (1 + 2 retries)", len(bodies))
	}
	msg := err.Error()
	if !strings.Contains(msg, "3 attempt(s)") || !strings.Contains(msg, "500") || !strings.Contains(msg, "***-***-0123") ||
		strings.Contains(msg, "975310") || strings.Contains(msg, "7700900123") {
		t.Fatalf("error = %q", msg)
	}
	if l := logs.String(); strings.Count(l, "message delivery failed") != 3 || strings.Contains(l, "975310") || strings.Contains(l, "7700900123") {
		t.Fatalf("log:\n%s", l)
	}
}

func TestWebhookRecoversAfterFailure(t *testing.T) {
	g := newGateway(t, func(n int) int {
		if n == 1 {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	ch := notify.NewChannel(store.MethodSMS, "webhook", hook(t, g.srv.URL), fast(2), nil)
	if err := ch.Send(context.Background(), notify.Message{To: "+447700900123", Body: "x"}); err != nil {
		t.Fatal(err)
	}
	if bodies, _ := g.requests(); len(bodies) != 2 {
		t.Fatalf("%d requests, want 2", len(bodies))
	}
}

func TestWebhookTimeout(t *testing.T) {
	g := newGateway(t, func(int) int { return 0 })
	r := fast(1)
	r.Timeout = 200 * time.Millisecond
	ch := notify.NewChannel(store.MethodSMS, "webhook", hook(t, g.srv.URL), r, nil)
	err := ch.Send(context.Background(), notify.Message{To: "+447700900123", Body: "x"})
	if err == nil || !strings.Contains(err.Error(), "deadline") {
		t.Fatalf("a hanging gateway gave %v, want a deadline error", err)
	}
	if bodies, _ := g.requests(); len(bodies) != 2 {
		t.Fatalf("%d requests, want 2", len(bodies))
	}
}

func TestWebhookPermanentFailureIsNotRetried(t *testing.T) {
	g := newGateway(t, func(int) int { return http.StatusBadRequest })
	ch := notify.NewChannel(store.MethodSMS, "webhook", hook(t, g.srv.URL), fast(3), nil)
	if err := ch.Send(context.Background(), notify.Message{To: "+447700900123", Body: "x"}); err == nil {
		t.Fatal("a 400 was taken for success")
	}
	if bodies, _ := g.requests(); len(bodies) != 1 {
		t.Fatalf("%d requests after a 400, want 1", len(bodies))
	}
}

func TestWebhookRedirectNotFollowed(t *testing.T) {
	elsewhere := newGateway(t, func(int) int { return http.StatusOK })
	redirect := httptest.NewServer(http.RedirectHandler(elsewhere.srv.URL, http.StatusTemporaryRedirect))
	t.Cleanup(redirect.Close)
	ch := notify.NewChannel(store.MethodSMS, "webhook", hook(t, redirect.URL), fast(0), nil)
	if err := ch.Send(context.Background(), notify.Message{To: "+447700900123", Body: "x"}); err == nil {
		t.Fatal("a redirect was taken for success")
	}
	if bodies, _ := elsewhere.requests(); len(bodies) != 0 {
		t.Fatal("the message followed a redirect")
	}
}

func TestWebhookOptionsRefused(t *testing.T) {
	for _, o := range []notify.WebhookOptions{
		{URL: "ftp://example.org", Key: hookKey},
		{URL: "http://127.0.0.1/", Key: []byte("short")},
	} {
		if _, err := notify.NewWebhook(o); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
}
