// Package pop3 is stepgate's POP3 front end: it speaks POP3 itself until
// the client has signed in with password and appended code (USER/PASS or
// AUTH PLAIN), then logs in to the real mail server and copies bytes both
// ways unchanged. The life cycle is internal/relay's; this package holds
// POP3's dialogue and its upstream login.
package pop3

import (
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

// Server is the POP3 front end: its own dialogue on the relay's life
// cycle and sockets.
type Server struct {
	*relay.Server
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
	log := o.Log.With("service", "pop3")
	r := relay.New(relay.Config{Protocol: "pop3", PreLoginTimeout: o.Config.PreLoginTimeout,
		AllowPlainRemote: o.Config.AllowPlainRemote, LoginFormat: o.Config.LoginFormat, TLS: o.TLS,
		TrustedNetworks: o.Config.TrustedNetworks}, protocol{}, o.Verifier, up, log)
	return &Server{relay.NewServer(relay.Sockets{
		Name: "pop3", Plain: o.Config.Listen, PlainKey: "pop3.listen",
		Implicit: o.Config.POP3SListen, ImplicitKey: "pop3.pop3s_listen", TLS: o.TLS,
		MaxConns: o.Config.MaxConns, PerAddress: o.PerAddress,
		Busy: "-ERR [SYS/TEMP] Too many connections, try again later",
	}, r, nil)}, nil
}

// POP3SAddr is the pop3s listener's address, or "".
func (s *Server) POP3SAddr() string { return s.ImplicitAddr() }
