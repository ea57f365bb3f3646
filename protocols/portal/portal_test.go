package portal

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stepgate/stepgate/internal/account"
	"github.com/stepgate/stepgate/internal/verifier/verifiertest"
)

func newPortal(t *testing.T) (*Server, *verifiertest.Env) {
	t.Helper()
	clock := verifiertest.NewClock(time.Date(2026, 11, 24, 12, 0, 5, 0, time.UTC))
	e := verifiertest.New(t, verifiertest.Options{Clock: clock})
	s, err := New(Options{
		Config:   Config{Listen: "127.0.0.1:0", TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}},
		Verifier: e.Verifier, Store: e.Store, Accounts: account.New(e.Store, account.Options{}), Now: clock.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	return s, e
}

func get(s *Server, path, remote string, hdr map[string]string, cookies ...*http.Cookie) *httptest.ResponseRecorder {
	r := httptest.NewRequest("GET", "http://portal"+path, nil)
	r.RemoteAddr = remote
	for k, v := range hdr {
		r.Header.Set(k, v)
	}
	for _, c := range cookies {
		r.AddCookie(c)
	}
	w := httptest.NewRecorder()
	s.ServeHTTP(w, r)
	return w
}

func post(s *Server, path, remote string, form url.Values, cookies ...*http.Cookie) *httptest.ResponseRecorder {
	r := httptest.NewRequest("POST", "http://portal"+path, strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.RemoteAddr = remote
	for _, c := range cookies {
		r.AddCookie(c)
	}
	w := httptest.NewRecorder()
	s.ServeHTTP(w, r)
	return w
}

func cookie(w *httptest.ResponseRecorder, name string) *http.Cookie {
	for _, c := range w.Result().Cookies() {
		if c.Name == name {
			return c
		}
	}
	return nil
}

var tokenRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// TestPlainHTTPOnlyOnLoopback: a password never crosses a network in
// clear. From afar the portal answers only over TLS, or behind a trusted
// proxy that says the client used https; a client's own X-Forwarded-*
// headers are not believed.
func TestPlainHTTPOnlyOnLoopback(t *testing.T) {
	s, _ := newPortal(t)
	for _, c := range []struct {
		remote string
		hdr    map[string]string
		want   int
	}{
		{"127.0.0.1:5000", nil, 200},
		{"[::1]:5000", nil, 200},
		{"192.0.2.7:5000", nil, 403},
		{"192.0.2.7:5000", map[string]string{"X-Forwarded-Proto": "https", "X-Forwarded-For": "127.0.0.1"}, 403},
		{"10.0.0.1:5000", map[string]string{"X-Forwarded-Proto": "https", "X-Forwarded-For": "192.0.2.7"}, 200},
		{"10.0.0.1:5000", map[string]string{"X-Forwarded-Proto": "http", "X-Forwarded-For": "192.0.2.7"}, 403},
	} {
		w := get(s, "/signin", c.remote, c.hdr)
		if w.Code != c.want {
			t.Errorf("%s %v: %d, want %d", c.remote, c.hdr, w.Code, c.want)
		}
		if w.Code == 403 && strings.Contains(w.Body.String(), "<form") {
			t.Errorf("%s: a form served over plain HTTP from afar", c.remote)
		}
	}
	// Behind the proxy the cookie is Secure and the client is the one the
	// proxy names (its rightmost untrusted hop).
	w := get(s, "/signin", "10.0.0.1:5000", map[string]string{"X-Forwarded-Proto": "https", "X-Forwarded-For": "198.51.100.1, 192.0.2.7, 10.0.0.2"})
	if c := cookie(w, signInCookie); c == nil || !c.Secure || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode {
		t.Fatalf("sign-in cookie behind TLS = %+v", c)
	}
	if w.Header().Get("Strict-Transport-Security") == "" {
		t.Error("no HSTS over https")
	}
	r := httptest.NewRequest("GET", "/", nil)
	r.RemoteAddr = "10.0.0.1:5000"
	r.Header.Set("X-Forwarded-For", "198.51.100.1, 192.0.2.7, 10.0.0.2")
	if got := s.clientOf(r).addr.String(); got != "192.0.2.7" {
		t.Fatalf("client behind the proxy = %s, want 192.0.2.7", got)
	}
}

// TestSignInCookieAndCSRF: the headers every page carries; the sign-in
// form needs its token; the session cookie is random, HttpOnly,
// SameSite=Strict (not Secure on loopback); every form needs the
// session's token; the session ends after 15 idle minutes.
func TestSignInCookieAndCSRF(t *testing.T) {
	s, e := newPortal(t)
	e.AddUser(t, "bob", "bobpw")
	const lo = "127.0.0.1:5000"
	w := get(s, "/signin", lo, nil)
	if csp := w.Header().Get("Content-Security-Policy"); !strings.HasPrefix(csp, "default-src 'self'") {
		t.Fatalf("CSP = %q", csp)
	}
	for _, h := range []string{"X-Content-Type-Options", "Referrer-Policy", "Cache-Control", "X-Frame-Options"} {
		if w.Header().Get(h) == "" {
			t.Errorf("no %s", h)
		}
	}
	pre := cookie(w, signInCookie)
	tok := tokenRE.FindStringSubmatch(w.Body.String())
	if pre == nil || tok == nil || pre.Value != tok[1] {
		t.Fatalf("sign-in token: cookie %+v, form %v", pre, tok)
	}
	form := url.Values{"name": {"bob"}, "password": {"bobpw"}}
	if w := post(s, "/signin", lo, form, pre); w.Code != 403 {
		t.Fatalf("sign-in without the token: %d", w.Code)
	}
	form.Set("csrf", "x"+tok[1][1:])
	if w := post(s, "/signin", lo, form, pre); w.Code != 403 {
		t.Fatalf("sign-in with another token: %d", w.Code)
	}
	form.Set("csrf", tok[1])
	w = post(s, "/signin", lo, form, pre)
	if w.Code != 303 || w.Header().Get("Location") != "/setup" {
		t.Fatalf("sign-in: %d %s", w.Code, w.Header().Get("Location"))
	}
	sc := cookie(w, "stepgate")
	if sc == nil || !sc.HttpOnly || sc.Secure || sc.SameSite != http.SameSiteStrictMode || len(sc.Value) < 40 {
		t.Fatalf("session cookie = %+v", sc)
	}
	if strings.Contains(w.Header().Get("Location"), "bobpw") {
		t.Fatal("a secret in a URL")
	}

	w = get(s, "/recovery", lo, nil, sc)
	tok = tokenRE.FindStringSubmatch(w.Body.String())
	if w.Code != 200 || tok == nil {
		t.Fatalf("recovery page: %d", w.Code)
	}
	if w := post(s, "/devices/revoke-all", lo, url.Values{}, sc); w.Code != 403 {
		t.Fatalf("a form without the token: %d", w.Code)
	}
	if w := post(s, "/devices/revoke-all", lo, url.Values{"csrf": {"forged"}}, sc); w.Code != 403 {
		t.Fatalf("a form with a forged token: %d", w.Code)
	}
	// Another session's token is no good either.
	w2 := get(s, "/signin", lo, nil)
	if w := post(s, "/devices/revoke-all", lo, url.Values{"csrf": {cookie(w2, signInCookie).Value}}, sc); w.Code != 403 {
		t.Fatalf("a form with the sign-in form's token: %d", w.Code)
	}

	e.Clock.Advance(14 * time.Minute)
	if w := get(s, "/", lo, nil, sc); w.Code != 200 {
		t.Fatalf("after 14 idle minutes: %d", w.Code)
	}
	e.Clock.Advance(15 * time.Minute)
	if w := get(s, "/", lo, nil, sc); w.Code != 303 || w.Header().Get("Location") != "/signin" {
		t.Fatalf("after 15 idle minutes: %d %s", w.Code, w.Header().Get("Location"))
	}
}
