// Package ldap is stepgate's LDAP front end: an LDAPv3 server whose simple
// bind is a sign-in with password and appended code, in front of
// stepgate's own small directory of its accounts.
package ldap

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"time"

	updir "github.com/stepgate/stepgate/internal/directory"
	"github.com/stepgate/stepgate/internal/listener"
	"github.com/stepgate/stepgate/internal/store"
	"github.com/stepgate/stepgate/internal/verifier"
)

// Config is the front end's share of the configuration, complete: the
// caller (internal/config, through internal/server) has filled in the
// defaults and checked the values, so nothing here is defaulted again.
type Config struct {
	// Listen and LDAPSListen are addresses; "" or "off" is none. The
	// ldaps listener needs Options.TLS.
	Listen, LDAPSListen string
	BaseDN              string
	AllowPlainRemote    bool
	AnonymousSearch     bool
	ReadTimeout         time.Duration
	IdleTimeout         time.Duration
	MaxMessageBytes     int
	MaxConns            int
	// Upstream, when set, is proxy mode.
	Upstream *Upstream
}

// Upstream is the real directory behind the front end in proxy mode.
type Upstream struct {
	URLs           []string
	StartTLS       bool
	CAFile         string
	PassthroughDNs []string
	// UserAttribute names the account in a user's entry ("uid").
	UserAttribute string
	// Timeout bounds each dial and each upstream request.
	Timeout time.Duration
}

// Options configure a Server.
type Options struct {
	Config Config
	// TLS, when set, turns on StartTLS and the ldaps listener.
	TLS      *tls.Config
	Verifier *verifier.Verifier
	Store    *store.Store
	// Directory, in proxy mode, finds the entries that bind names stand
	// for (with the lookup account, identity and groups the server's
	// config names); nil builds an anonymous one from Config.Upstream.
	Directory *updir.Directory
	Log       *slog.Logger
	// PerAddress, when set, caps connections per client address
	// (shared with the other front ends).
	PerAddress *listener.AddrLimits
}

// Server is the LDAP front end.
type Server struct {
	cfg Config
	tls *tls.Config
	v   *verifier.Verifier
	dir *directory
	// proxy, when set, is proxy mode: binds, searches and compares go
	// to the upstream directory.
	proxy   *proxy
	log     *slog.Logger
	set     *listener.Set
	perAddr *listener.AddrLimits
}

// New checks the options and builds a server; Listen opens its sockets.
func New(o Options) (*Server, error) {
	if o.Verifier == nil || o.Store == nil {
		return nil, errors.New("ldap: a verifier and a store are required")
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	dir, err := newDirectory(o.Store, o.Config.BaseDN)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: o.Config, tls: o.TLS, v: o.Verifier, dir: dir, log: o.Log.With("service", "ldap"), perAddr: o.PerAddress}
	if o.Config.Upstream != nil {
		if s.proxy, err = newProxy(o.Config.Upstream, o.Config.BaseDN, o.Directory, s.log); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Listen opens the plain (StartTLS-capable) and, when configured, the
// ldaps listeners.
func (s *Server) Listen() error {
	set, err := listener.Listen(listener.Config{
		Name: "ldap", Plain: s.cfg.Listen, PlainKey: "ldap.listen",
		Implicit: s.cfg.LDAPSListen, ImplicitKey: "ldap.ldaps_listen", TLS: s.tls,
		MaxConns: s.cfg.MaxConns, PerAddress: s.perAddr, Log: s.log,
		Refuse: func(nc net.Conn) {
			nc.SetWriteDeadline(deadline(s.cfg.ReadTimeout))
			nc.Write(encodeExtended(0, result{code: resultBusy, diagnostic: "too many connections, try again later"}, oidNoticeOfDisconnection, nil))
		},
		Handle: func(ctx context.Context, c listener.Conn) { newConn(s, c.Net, c.ImplicitTLS).serve(ctx) },
	})
	if err != nil {
		return err
	}
	s.set = set
	return nil
}

// Addr is the plain listener's address, or "" when it is off.
func (s *Server) Addr() string { return s.set.Addr(false) }

// LDAPSAddr is the ldaps listener's address, or "" when it is off.
func (s *Server) LDAPSAddr() string { return s.set.Addr(true) }

// Serve accepts connections until ctx ends, then closes the listeners and
// every connection and returns once their handlers are done.
func (s *Server) Serve(ctx context.Context) error {
	if s.set == nil {
		if err := s.Listen(); err != nil {
			return err
		}
	}
	return s.set.Serve(ctx)
}

// Close closes the listeners of a server that will not Serve.
func (s *Server) Close() error { return s.set.Close() }

// Conns is the number of open client connections.
func (s *Server) Conns() int { return s.set.Conns() }
