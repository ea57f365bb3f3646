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

// Server is the SMTP submission front end: its own dialogue on the
// relay's life cycle and sockets, and what the mail server's EHLO offers.
type Server struct {
	*relay.Server
	proto *protocol
	log   *slog.Logger
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
	log := o.Log.With("service", "submission")
	proto := &protocol{log: log, up: up}
	r := relay.New(relay.Config{Protocol: "smtp", PreLoginTimeout: o.Config.PreLoginTimeout,
		AllowPlainRemote: o.Config.AllowPlainRemote, LoginFormat: o.Config.LoginFormat, TLS: o.TLS,
		TrustedNetworks: o.Config.TrustedNetworks}, proto, o.Verifier, up, log)
	// The default probe (a connection to the point of AUTH) reads the
	// mail server's EHLO again each time.
	return &Server{Server: relay.NewServer(relay.Sockets{
		Name: "submission", Plain: o.Config.Listen, PlainKey: "submission.listen",
		Implicit: o.Config.SubmissionsListen, ImplicitKey: "submission.submissions_listen", TLS: o.TLS,
		MaxConns: o.Config.MaxConns, PerAddress: o.PerAddress,
		Busy: "421 4.7.0 Too many connections, try again later",
	}, r, nil), proto: proto, log: log}, nil
}

// Listen opens the plain (STARTTLS-capable) and, when configured, the
// submissions listeners, and learns what the mail server offers from
// its EHLO (the EHLO clients see promises no more).
func (s *Server) Listen() error {
	if err := s.Server.Listen(); err != nil {
		return err
	}
	if err := s.Probe(context.Background()); err != nil {
		s.log.Warn("the mail server's EHLO could not be read; extensions are offered once it answers", "upstream", s.Upstream(), "err", err)
	}
	return nil
}

// Serve is relay.Server's, after this Listen when it has not run.
func (s *Server) Serve(ctx context.Context) error {
	if !s.Listening() {
		if err := s.Listen(); err != nil {
			return err
		}
	}
	return s.Server.Serve(ctx)
}

// SubmissionsAddr is the submissions listener's address, or "".
func (s *Server) SubmissionsAddr() string { return s.ImplicitAddr() }
