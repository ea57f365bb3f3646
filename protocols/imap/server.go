// Package imap is stepgate's IMAP front end: it speaks IMAP itself until
// the client has signed in with password and appended code, then logs in
// to the real mail server and copies bytes both ways unchanged.
package imap

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
// defaults and checked the values, so nothing here is defaulted again.
type Config struct {
	// Listen and IMAPSListen are addresses; "" or "off" is none. The
	// imaps listener needs Options.TLS.
	Listen, IMAPSListen string
	AllowPlainRemote    bool
	PreLoginTimeout     time.Duration
	MaxConns            int
	// LoginFormat maps a login name to an account as the mail server
	// does (Dovecot's auth_username_format): %Ln, %n, %Lu or %u.
	LoginFormat string
	// TrustedNetworks are fronts (webmail, a proxy) whose ID
	// "x-originating-ip" names the real client.
	TrustedNetworks []netip.Prefix
}

// Options configure a Server.
type Options struct {
	Config Config
	// Upstream is the mail server.
	Upstream Upstream
	// TLS, when set, turns on STARTTLS and the imaps listener.
	TLS      *tls.Config
	Verifier *verifier.Verifier
	Log      *slog.Logger
	// PerAddress, when set, caps connections per client address
	// (shared with the other front ends).
	PerAddress *listener.AddrLimits
}

// Server is the IMAP front end.
type Server struct {
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
		return nil, errors.New("imap: a verifier is required")
	}
	up, err := relay.NewDialer("imap", o.Upstream)
	if err != nil {
		return nil, err
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: o.Config, tls: o.TLS, up: up, log: o.Log.With("service", "imap"), perAddr: o.PerAddress}
	s.relay = relay.New(relay.Config{Protocol: "imap", PreLoginTimeout: o.Config.PreLoginTimeout,
		AllowPlainRemote: o.Config.AllowPlainRemote, LoginFormat: o.Config.LoginFormat, TLS: o.TLS,
		TrustedNetworks: o.Config.TrustedNetworks}, protocol{}, o.Verifier, up, s.log)
	return s, nil
}

// Listen opens the plain (STARTTLS-capable) and, when configured, the
// imaps listeners.
func (s *Server) Listen() error {
	set, err := listener.Listen(listener.Config{
		Name: "imap", Plain: s.cfg.Listen, PlainKey: "imap.listen",
		Implicit: s.cfg.IMAPSListen, ImplicitKey: "imap.imaps_listen", TLS: s.tls,
		MaxConns: s.cfg.MaxConns, PerAddress: s.perAddr, Log: s.log,
		Refuse: func(nc net.Conn) {
			nc.SetWriteDeadline(deadline(s.cfg.PreLoginTimeout))
			nc.Write([]byte("* BYE [UNAVAILABLE] Too many connections, try again later\r\n"))
		},
		Handle: s.relay.Serve,
	})
	if err != nil {
		return err
	}
	s.set = set
	return nil
}

// Addr is the plain listener's address, or "".
func (s *Server) Addr() string { return s.set.Addr(false) }

// IMAPSAddr is the imaps listener's address, or "".
func (s *Server) IMAPSAddr() string { return s.set.Addr(true) }

// Close closes the listeners of a server that will not Serve.
func (s *Server) Close() error { return s.set.Close() }

// Probe checks that the mail server answers (for /readyz).
func (s *Server) Probe(ctx context.Context) error { return probe(ctx, s.up) }

// Conns is the number of open client connections.
func (s *Server) Conns() int { return s.set.Conns() }

// Serve accepts connections until ctx ends, then closes the listeners and
// every connection (spliced ones too: their handlers close the upstream
// side) and returns once they are done.
func (s *Server) Serve(ctx context.Context) error {
	if s.set == nil {
		if err := s.Listen(); err != nil {
			return err
		}
	}
	return s.set.Serve(ctx, "upstream", s.up.Addr)
}

// PasswordChecker checks a person's password with an IMAP login to the
// mail server, for a sign-in made elsewhere (the portal).
func (s *Server) PasswordChecker(login string, client net.Addr) verifier.PasswordChecker {
	return s.relay.PasswordChecker(login, client)
}
