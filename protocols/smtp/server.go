// Package smtp is stepgate's SMTP submission front end: it speaks SMTP
// itself until the client has signed in with password and appended code
// (AUTH PLAIN or LOGIN), then logs in to the real mail server as the user
// and copies bytes both ways unchanged, so the client's MAIL, RCPT and
// DATA go to the mail server as they were sent. The life cycle is
// internal/relay's; this package holds SMTP's dialogue and its upstream
// login.
package smtp

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/stepgate/stepgate/internal/listener"
	"github.com/stepgate/stepgate/internal/relay"
	"github.com/stepgate/stepgate/internal/verifier"
)

// Config is the front end's share of the configuration, complete: the
// caller (internal/config, through internal/server) has filled in the
// defaults and checked the values.
type Config struct {
	// Listen and SubmissionsListen are addresses; "" or "off" is none.
	// The submissions (implicit TLS) listener needs Options.TLS.
	Listen, SubmissionsListen string
	AllowPlainRemote          bool
	PreLoginTimeout           time.Duration
	MaxConns                  int
	// LoginFormat maps a login name to an account as the mail server
	// does (Dovecot's auth_username_format): %Ln, %n, %Lu or %u.
	LoginFormat string
	// TrustedNetworks are fronts whose XCLIENT ADDR= names the real
	// client.
	TrustedNetworks []netip.Prefix
}

// Upstream is the mail server behind the front end (submission port).
type Upstream = relay.Upstream

// Options configure a Server.
type Options struct {
	Config   Config
	Upstream Upstream
	// TLS, when set, turns on STARTTLS and the submissions listener.
	TLS        *tls.Config
	Verifier   *verifier.Verifier
	Log        *slog.Logger
	PerAddress *listener.AddrLimits
}

// Server is the SMTP submission front end.
type Server struct {
	proto   *protocol
	cfg     Config
	tls     *tls.Config
	up      *relay.Dialer
	relay   *relay.Relay
	log     *slog.Logger
	set     *listener.Set
	perAddr *listener.AddrLimits
}

// New checks the options and builds a server; Listen opens its sockets.
func New(o Options) (*Server, error) {
	if o.Verifier == nil {
		return nil, errors.New("submission: a verifier is required")
	}
	up, err := relay.NewDialer("submission", o.Upstream)
	if err != nil {
		return nil, err
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: o.Config, tls: o.TLS, up: up, log: o.Log.With("service", "submission"), perAddr: o.PerAddress}
	s.proto = &protocol{log: s.log, up: up}
	s.relay = relay.New(relay.Config{Protocol: "smtp", PreLoginTimeout: o.Config.PreLoginTimeout,
		AllowPlainRemote: o.Config.AllowPlainRemote, LoginFormat: o.Config.LoginFormat, TLS: o.TLS,
		TrustedNetworks: o.Config.TrustedNetworks}, s.proto, o.Verifier, up, s.log)
	return s, nil
}

// Listen opens the plain (STARTTLS-capable) and, when configured, the
// submissions listeners, and learns what the mail server offers from
// its EHLO (the EHLO clients see promises no more).
func (s *Server) Listen() error {
	set, err := listener.Listen(listener.Config{
		Name: "submission", Plain: s.cfg.Listen, PlainKey: "submission.listen",
		Implicit: s.cfg.SubmissionsListen, ImplicitKey: "submission.submissions_listen", TLS: s.tls,
		MaxConns: s.cfg.MaxConns, PerAddress: s.perAddr, Log: s.log,
		Refuse: func(nc net.Conn) {
			nc.SetWriteDeadline(time.Now().Add(s.cfg.PreLoginTimeout))
			nc.Write([]byte("421 4.7.0 Too many connections, try again later\r\n"))
		},
		Handle: s.relay.Serve,
	})
	if err != nil {
		return err
	}
	s.set = set
	if err := s.up.Check(context.Background(), s.proto); err != nil {
		s.log.Warn("the mail server's EHLO could not be read; extensions are offered once it answers", "upstream", s.up.Addr, "err", err)
	}
	return nil
}

// Addr is the plain listener's address, or "".
func (s *Server) Addr() string { return s.set.Addr(false) }

// SubmissionsAddr is the submissions listener's address, or "".
func (s *Server) SubmissionsAddr() string { return s.set.Addr(true) }

// Close closes the listeners of a server that will not Serve.
func (s *Server) Close() error { return s.set.Close() }

// Probe checks that the mail server answers (for /readyz), and reads its
// EHLO again.
func (s *Server) Probe(ctx context.Context) error { return s.up.Check(ctx, s.proto) }

// Conns is the number of open client connections.
func (s *Server) Conns() int { return s.set.Conns() }

// Serve accepts connections until ctx ends, then closes the listeners and
// every connection, and returns once they are done.
func (s *Server) Serve(ctx context.Context) error {
	if s.set == nil {
		if err := s.Listen(); err != nil {
			return err
		}
	}
	return s.set.Serve(ctx, "upstream", s.up.Addr)
}
