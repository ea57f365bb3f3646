// Package listener runs a protocol front end's sockets: a plain listener
// and an implicit-TLS one, a cap on open connections, one goroutine per
// connection, and a shutdown that closes every connection and waits for
// its handler.
package listener

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
)

// Conn is one accepted connection.
type Conn struct {
	// Raw is the TCP connection; closing it ends everything above it.
	Raw net.Conn
	// Net is Raw, or a TLS server connection over it (not yet
	// handshaken) on the implicit-TLS listener.
	Net net.Conn
	// ImplicitTLS says which listener accepted it.
	ImplicitTLS bool
}

// Config describes the sockets of one front end.
type Config struct {
	// Name prefixes errors and names the service in logs ("ldap").
	Name string
	// Plain and Implicit are listen addresses; "" or "off" is none.
	// PlainKey and ImplicitKey name them in errors ("ldap.listen").
	Plain, PlainKey       string
	Implicit, ImplicitKey string
	// TLS serves the implicit-TLS listener.
	TLS *tls.Config
	// MaxConns caps open connections; one over it gets Refuse.
	MaxConns int
	// PerAddress, when set, caps the connections from one client address
	// (shared with the other front ends); one over it gets Refuse too.
	PerAddress *AddrLimits
	// Refuse, when set, writes the protocol's "busy" to a connection
	// refused over the cap (plain listener only) before it is closed.
	Refuse func(nc net.Conn)
	// Handle serves one connection; the connection is closed after it.
	Handle func(ctx context.Context, c Conn)
	Log    *slog.Logger
}

// Set is the listeners of one front end and its open connections.
type Set struct {
	cfg  Config
	lns  []socket
	live atomic.Int64

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

type socket struct {
	net.Listener
	implicitTLS bool
}

// Enabled reports whether a listen address asks for a socket: "" and
// "off" do not.
func Enabled(addr string) bool { return addr != "" && addr != "off" }

// Listen opens the configured sockets.
func Listen(cfg Config) (*Set, error) {
	if cfg.MaxConns < 1 {
		cfg.MaxConns = 1
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	s := &Set{cfg: cfg, conns: map[net.Conn]struct{}{}}
	if Enabled(cfg.Plain) {
		l, err := net.Listen("tcp", cfg.Plain)
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", cfg.PlainKey, cfg.Plain, err)
		}
		s.lns = append(s.lns, socket{Listener: l})
	}
	if Enabled(cfg.Implicit) {
		if cfg.TLS == nil {
			s.Close()
			return nil, fmt.Errorf("%s needs tls.cert_file and tls.key_file", cfg.ImplicitKey)
		}
		l, err := net.Listen("tcp", cfg.Implicit)
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("%s %s: %w", cfg.ImplicitKey, cfg.Implicit, err)
		}
		s.lns = append(s.lns, socket{Listener: l, implicitTLS: true})
	}
	return s, nil
}

// Addr is the address of the plain (implicit false) or implicit-TLS
// listener, or "" when it is off or the set was never opened (nil): a
// front end answers for its sockets before and after it listens.
func (s *Set) Addr(implicit bool) string {
	if s == nil {
		return ""
	}
	for _, l := range s.lns {
		if l.implicitTLS == implicit {
			return l.Addr().String()
		}
	}
	return ""
}

// Conns is the number of open connections (0 for a nil set).
func (s *Set) Conns() int {
	if s == nil {
		return 0
	}
	return int(s.live.Load())
}

// Close closes the listeners (of a set that will not Serve, or at the end
// of Serve). A nil set has nothing to close.
func (s *Set) Close() error {
	if s == nil {
		return nil
	}
	for _, l := range s.lns {
		l.Close()
	}
	return nil
}

// Serve accepts connections until ctx ends (or a listener fails), then
// closes the listeners and every connection and returns once every
// handler has.
func (s *Set) Serve(ctx context.Context, logAttrs ...any) error {
	var wg sync.WaitGroup
	errc := make(chan error, len(s.lns))
	for _, l := range s.lns {
		s.cfg.Log.Info("listening", append([]any{"addr", l.Addr().String(), "tls", l.implicitTLS}, logAttrs...)...)
		wg.Add(1)
		go func() {
			defer wg.Done()
			errc <- s.accept(ctx, l, &wg)
		}()
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	s.mu.Lock()
	s.closed = true
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.Close()
	wg.Wait()
	return err
}

func (s *Set) accept(ctx context.Context, l socket, wg *sync.WaitGroup) error {
	for {
		nc, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("%s accept: %w", s.cfg.Name, err)
		}
		if tc, ok := nc.(*net.TCPConn); ok {
			tc.SetKeepAlive(true)
		}
		if s.live.Add(1) > int64(s.cfg.MaxConns) {
			s.live.Add(-1)
			// Over the cap: say so in protocol terms and hang up,
			// without a goroutine for the connection's lifetime.
			s.cfg.Log.Warn("connection refused: too many connections", "remote", nc.RemoteAddr().String(), "max_conns", s.cfg.MaxConns)
			if !l.implicitTLS && s.cfg.Refuse != nil {
				s.cfg.Refuse(nc)
			}
			nc.Close()
			continue
		}
		releaseAddr := func() {}
		if s.cfg.PerAddress != nil {
			release, max, ok := s.cfg.PerAddress.acquire(nc.RemoteAddr())
			if !ok {
				s.live.Add(-1)
				s.cfg.Log.Warn("connection refused: too many connections from this address", "remote", nc.RemoteAddr().String(), "max_conns_per_address", max)
				if !l.implicitTLS && s.cfg.Refuse != nil {
					s.cfg.Refuse(nc)
				}
				nc.Close()
				continue
			}
			releaseAddr = release
		}
		c := Conn{Raw: nc, Net: nc, ImplicitTLS: l.implicitTLS}
		if l.implicitTLS {
			c.Net = tls.Server(nc, s.cfg.TLS)
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			nc.Close()
			releaseAddr()
			s.live.Add(-1)
			return nil
		}
		s.conns[nc] = struct{}{}
		s.mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.cfg.Handle(ctx, c)
			nc.Close()
			s.mu.Lock()
			delete(s.conns, nc)
			s.mu.Unlock()
			releaseAddr()
			s.live.Add(-1)
		}()
	}
}
