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

// Server is the IMAP front end: its own dialogue on the relay's life
// cycle and sockets.
type Server struct {
	*relay.Server
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
	log := o.Log.With("service", "imap")
	r := relay.New(relay.Config{Protocol: "imap", PreLoginTimeout: o.Config.PreLoginTimeout,
		AllowPlainRemote: o.Config.AllowPlainRemote, LoginFormat: o.Config.LoginFormat, TLS: o.TLS,
		TrustedNetworks: o.Config.TrustedNetworks}, protocol{}, o.Verifier, up, log)
	return &Server{relay.NewServer(relay.Sockets{
		Name: "imap", Plain: o.Config.Listen, PlainKey: "imap.listen",
		Implicit: o.Config.IMAPSListen, ImplicitKey: "imap.imaps_listen", TLS: o.TLS,
		MaxConns: o.Config.MaxConns, PerAddress: o.PerAddress,
		Busy: "* BYE [UNAVAILABLE] Too many connections, try again later",
	}, r, func(ctx context.Context) error { return probe(ctx, up) })}, nil
}

// IMAPSAddr is the imaps listener's address, or "".
func (s *Server) IMAPSAddr() string { return s.ImplicitAddr() }

// PasswordChecker checks a person's password with an IMAP login to the
// mail server, for a sign-in made elsewhere (the portal).
func (s *Server) PasswordChecker(login string, client net.Addr) verifier.PasswordChecker {
	return s.Relay().PasswordChecker(login, client)
}
