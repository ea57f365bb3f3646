// Package portal is the self-service web front end: a person signs in
// with the account's password (and, once enrolled, a code) through the
// same verifier, lockout and audit as every other protocol (protocol
// "portal"), then sets two-step up, manages authenticators, recovery
// codes, app passwords, e-mail and phone methods, sees their devices and
// security events. Pages are rendered on the server from embedded
// templates; they work without JavaScript.
package portal

import (
	"context"
	"crypto/tls"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/stepgate/stepgate/internal/account"
	"github.com/stepgate/stepgate/internal/history"
	"github.com/stepgate/stepgate/internal/store"
	"github.com/stepgate/stepgate/internal/verifier"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Protocol names the portal in attempts, the audit log and sessions.
const Protocol = "portal"

// Servers are the host:port names people type into their devices, for
// the how-to ("" when that front end is off).
type Servers struct {
	LDAP, IMAP, POP3, SMTP string
	// BaseDN is the LDAP directory's base, for the bind DN example.
	BaseDN string
}

// PasswordCheck sets up the password check of one portal sign-in when
// the password is not the store's hash: an upstream LDAP bind or IMAP
// login, as those front ends' sign-ins make it (it fills a.Password and
// what goes with it). done releases what the check opened.
type PasswordCheck func(ctx context.Context, a *verifier.Attempt, remote netip.Addr) (done func())

// Config is what the portal takes of the configuration.
type Config struct {
	// Listen is host:port.
	Listen string
	// TrustedProxies may set X-Forwarded-For and X-Forwarded-Proto.
	TrustedProxies []netip.Prefix
	Servers        Servers
	// Idle ends a portal session unused this long; 15 minutes when 0.
	Idle time.Duration
}

// Options build a Server.
type Options struct {
	Config   Config
	TLS      *tls.Config // nil: plain HTTP (loopback, or behind TrustedProxies)
	Verifier *verifier.Verifier
	Store    *store.Store
	Accounts *account.Service
	// Password, when set, checks passwords instead of the local hash.
	Password PasswordCheck
	// AppProtocols are the protocols app passwords can sign in on here:
	// where stepgate checks the password itself (the LDAP front end's own
	// directory; a mail front end that logs in as a master user). Where
	// the mail server checks passwords it needs the real one.
	AppProtocols []string
	// History records changes for the security events page; nil: none.
	History *history.Recorder
	Audit   *slog.Logger
	Log     *slog.Logger
	Now     func() time.Time
}

// Server is the portal.
type Server struct {
	o     Options
	cfg   Config
	pages map[string]*template.Template
	mux   *http.ServeMux
	ln    net.Listener
	srv   *http.Server
	sess  *sessions
	mu    sync.Mutex
}

// New builds the portal.
func New(o Options) (*Server, error) {
	if o.Verifier == nil || o.Store == nil || o.Accounts == nil {
		return nil, errors.New("portal: a verifier, a store and the account actions are required")
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Audit == nil {
		o.Audit = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Config.Idle <= 0 {
		o.Config.Idle = 15 * time.Minute
	}
	s := &Server{o: o, cfg: o.Config, sess: newSessions(o.Config.Idle, o.Now)}
	if err := s.parseTemplates(); err != nil {
		return nil, err
	}
	s.routes()
	return s, nil
}

// partials are the templates every page may use.
var partials = map[string]bool{"layout": true, "codes": true, "howto": true}

func (s *Server) parseTemplates() error {
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return err
	}
	s.pages = map[string]*template.Template{}
	for _, n := range names {
		base := strings.TrimSuffix(strings.TrimPrefix(n, "templates/"), ".html")
		if partials[base] {
			continue
		}
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html",
			"templates/codes.html", "templates/howto.html", n)
		if err != nil {
			return fmt.Errorf("portal: template %s: %w", n, err)
		}
		s.pages[base] = t
	}
	return nil
}

// Listen opens the listener.
func (s *Server) Listen() error {
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("portal.listen %s: %w", s.cfg.Listen, err)
	}
	if s.o.TLS != nil {
		ln = tls.NewListener(ln, s.o.TLS)
	}
	s.ln = ln
	s.srv = &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 32 << 10,
		ErrorLog: slog.NewLogLogger(s.o.Log.Handler(), slog.LevelWarn)}
	s.o.Log.Info("listening", "service", "portal", "addr", s.Addr(), "tls", s.o.TLS != nil)
	return nil
}

// Addr is the bound address ("" before Listen).
func (s *Server) Addr() string {
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// URL is where a person opens the portal.
func (s *Server) URL() string {
	scheme := "http"
	if s.o.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + s.Addr() + "/"
}

// Serve serves until ctx ends.
func (s *Server) Serve(ctx context.Context) error {
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		t := time.NewTicker(time.Minute)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				s.srv.Shutdown(sctx)
				cancel()
				return
			case <-stop:
				return
			case <-t.C:
				s.sess.sweep()
			}
		}
	}()
	err := s.srv.Serve(s.ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Close closes the listener.
func (s *Server) Close() error {
	if s.srv != nil {
		return s.srv.Close()
	}
	if s.ln != nil {
		return s.ln.Close()
	}
	return nil
}

// Probe has nothing to check beyond the store, which /readyz checks.
func (s *Server) Probe(context.Context) error { return nil }
