// Package pop3 is stepgate's POP3 front end: it speaks POP3 itself until
// the client has signed in with password and appended code (USER/PASS or
// AUTH PLAIN), then logs in to the real mail server and copies bytes both
// ways unchanged. The life cycle is internal/relay's; this package holds
// POP3's dialogue and its upstream login.
package pop3

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
	// Listen and POP3SListen are addresses; "" or "off" is none. The
	// pop3s listener needs Options.TLS.
	Listen, POP3SListen string
	AllowPlainRemote    bool
	PreLoginTimeout     time.Duration
	MaxConns            int
	// LoginFormat maps a login name to an account as the mail server
	// does (Dovecot's auth_username_format): %Ln, %n, %Lu or %u.
	LoginFormat string
	// TrustedNetworks are fronts whose XCLIENT names the real client.
	TrustedNetworks []netip.Prefix
}

// Upstream is the mail server behind the front end.
type Upstream = relay.Upstream

// Options configure a Server.
type Options struct {
	Config   Config
	Upstream Upstream
	// TLS, when set, turns on STLS and the pop3s listener.
	TLS        *tls.Config
	Verifier   *verifier.Verifier
	Log        *slog.Logger
	PerAddress *listener.AddrLimits
}

// Server is the POP3 front end.
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
		return nil, errors.New("pop3: a verifier is required")
	}
	up, err := relay.NewDialer("pop3", o.Upstream)
	if err != nil {
		return nil, err
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: o.Config, tls: o.TLS, up: up, log: o.Log.With("service", "pop3"), perAddr: o.PerAddress}
	s.relay = relay.New(relay.Config{Protocol: "pop3", PreLoginTimeout: o.Config.PreLoginTimeout,
		AllowPlainRemote: o.Config.AllowPlainRemote, LoginFormat: o.Config.LoginFormat, TLS: o.TLS,
		TrustedNetworks: o.Config.TrustedNetworks}, protocol{}, o.Verifier, up, s.log)
	return s, nil
}

// Listen opens the plain (STLS-capable) and, when configured, the pop3s
// listeners.
func (s *Server) Listen() error {
	set, err := listener.Listen(listener.Config{
		Name: "pop3", Plain: s.cfg.Listen, PlainKey: "pop3.listen",
		Implicit: s.cfg.POP3SListen, ImplicitKey: "pop3.pop3s_listen", TLS: s.tls,
		MaxConns: s.cfg.MaxConns, PerAddress: s.perAddr, Log: s.log,
		Refuse: func(nc net.Conn) {
			nc.SetWriteDeadline(time.Now().Add(s.cfg.PreLoginTimeout))
			nc.Write([]byte("-ERR [SYS/TEMP] Too many connections, try again later\r\n"))
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

// POP3SAddr is the pop3s listener's address, or "".
func (s *Server) POP3SAddr() string { return s.set.Addr(true) }

// Close closes the listeners of a server that will not Serve.
func (s *Server) Close() error { return s.set.Close() }

// Probe checks that the mail server answers (for /readyz).
func (s *Server) Probe(ctx context.Context) error {
	return s.up.Check(ctx, protocol{})
}

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
