package relay

import (
	"context"
	"crypto/tls"
	"net"
	"time"

	"github.com/stepgate/stepgate/internal/listener"
)

// Sockets says where a mail front end listens and what a connection over
// its caps is told.
type Sockets struct {
	// Name is the service in logs and the listener's name.
	Name string
	// Plain and Implicit are addresses ("" or "off": none); the keys name
	// them in errors (imap.listen, imap.imaps_listen).
	Plain, PlainKey, Implicit, ImplicitKey string
	// TLS, when set, serves the implicit-TLS listener.
	TLS        *tls.Config
	MaxConns   int
	PerAddress *listener.AddrLimits
	// Busy is the protocol's line, without CRLF, for a connection over a
	// cap.
	Busy string
}

// Server is a mail front end's listeners around its Relay: IMAP, POP3 and
// submission are each one, with a dialogue of their own.
type Server struct {
	sk    Sockets
	pre   time.Duration
	up    *Dialer
	relay *Relay
	probe func(context.Context) error
	set   *listener.Set
}

// NewServer makes the server of r's front end. probe checks that the mail
// server answers (for /readyz); nil means a connection taken to the point
// of login (Dialer.Check).
func NewServer(sk Sockets, r *Relay, probe func(context.Context) error) *Server {
	s := &Server{sk: sk, pre: r.cfg.PreLoginTimeout, up: r.up, relay: r, probe: probe}
	if s.probe == nil {
		s.probe = func(ctx context.Context) error { return r.up.Check(ctx, r.proto) }
	}
	return s
}

// Relay is the life cycle the server's connections run.
func (s *Server) Relay() *Relay { return s.relay }

// Listen opens the plain (STARTTLS-capable) and, when configured, the
// implicit-TLS listeners.
func (s *Server) Listen() error {
	set, err := listener.Listen(listener.Config{
		Name: s.sk.Name, Plain: s.sk.Plain, PlainKey: s.sk.PlainKey,
		Implicit: s.sk.Implicit, ImplicitKey: s.sk.ImplicitKey, TLS: s.sk.TLS,
		MaxConns: s.sk.MaxConns, PerAddress: s.sk.PerAddress, Log: s.relay.log,
		Refuse: func(nc net.Conn) {
			nc.SetWriteDeadline(time.Now().Add(s.pre))
			nc.Write([]byte(s.sk.Busy + "\r\n"))
		},
		Handle: s.relay.Serve,
	})
	if err != nil {
		return err
	}
	s.set = set
	return nil
}

// Upstream is the mail server's address.
func (s *Server) Upstream() string { return s.up.Addr }

// Listening reports whether Listen has opened the sockets.
func (s *Server) Listening() bool { return s.set != nil }

// Addr is the plain listener's address, or "".
func (s *Server) Addr() string { return s.set.Addr(false) }

// ImplicitAddr is the implicit-TLS listener's address, or "".
func (s *Server) ImplicitAddr() string { return s.set.Addr(true) }

// Close closes the listeners of a server that will not Serve.
func (s *Server) Close() error { return s.set.Close() }

// Probe checks that the mail server answers (for /readyz).
func (s *Server) Probe(ctx context.Context) error { return s.probe(ctx) }

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
