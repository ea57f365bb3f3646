package portal

import (
	"bytes"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// signInCookie carries the token of the sign-in form (login CSRF):
// before a session exists, the form proves it came from this site by
// matching a cookie that another site cannot set or read.
const signInCookie = "stepgate_signin"

// cookieName is the session cookie; over TLS it takes the __Host-
// prefix, which browsers accept only Secure, on "/", and without a
// Domain, so a neighbouring host cannot plant one.
func cookieName(secure bool) string {
	if secure {
		return "__Host-stepgate"
	}
	return "stepgate"
}

// maxForm bounds a form's body: the largest is a label and a code.
const maxForm = 16 << 10

// client is who is asking, as far as the portal can trust.
type client struct {
	addr netip.Addr
	tls  bool
}

// loopback reports whether the connection never left the machine.
func (c client) loopback() bool { return c.addr.IsLoopback() }

// clientOf finds the client: the connection's peer, or, when the peer is
// a trusted proxy, the address it names in X-Forwarded-For (the
// rightmost one not itself a trusted proxy) and the scheme of
// X-Forwarded-Proto.
func (s *Server) clientOf(r *http.Request) client {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	addr, _ := netip.ParseAddr(host)
	addr = addr.Unmap()
	c := client{addr: addr, tls: r.TLS != nil}
	if !s.trusted(addr) {
		return c
	}
	if p := r.Header.Get("X-Forwarded-Proto"); p != "" {
		c.tls = strings.EqualFold(strings.TrimSpace(p), "https")
	}
	var hops []string
	for _, h := range r.Header.Values("X-Forwarded-For") {
		hops = append(hops, strings.Split(h, ",")...)
	}
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			break
		}
		c.addr = a.Unmap()
		if !s.trusted(c.addr) {
			break
		}
	}
	return c
}

func (s *Server) trusted(a netip.Addr) bool {
	for _, p := range s.cfg.TrustedProxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// ServeHTTP sets the headers every answer carries and refuses plain HTTP
// from afar before any route runs.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Cache-Control", "no-store")
	c := s.clientOf(r)
	if c.tls {
		h.Set("Strict-Transport-Security", "max-age=31536000")
	}
	if !c.tls && !c.loopback() {
		// Passwords must not cross a network in clear. Said plainly,
		// with nothing else served.
		http.Error(w, "The portal needs HTTPS from another machine: ask the administrator for its https:// address.", http.StatusForbidden)
		return
	}
	if r.Method == http.MethodPost {
		r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	}
	s.mux.ServeHTTP(w, r)
}

// page is what every template gets.
type page struct {
	Title string
	Nav   string // the section shown, for aria-current
	User  string
	CSRF  string
	Flash string
	Error string
	Data  any
}

// render writes a page; a template that fails leaves a plain error, not a
// half page.
func (s *Server) render(w http.ResponseWriter, status int, name string, p page) {
	t, ok := s.pages[name]
	if !ok {
		s.o.Log.Error("portal: no template", "name", name)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout.html", p); err != nil {
		s.o.Log.Error("portal: rendering", "page", name, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// audit writes one audit event for a change made in the portal and
// records it in the person's history. attrs never hold a secret.
func (s *Server) changed(r *http.Request, p *psession, action string, attrs ...any) {
	c := s.clientOf(r)
	args := append([]any{"protocol", Protocol, "user", p.user, "remote", c.addr.String(), "action", action}, attrs...)
	s.o.Audit.Log(r.Context(), slog.LevelInfo, "change", args...)
	if s.o.History != nil {
		s.o.History.Change(p.user, Protocol, c.addr.String(), action)
	}
}
