// Package ldap is stepgate's LDAP front end: an LDAPv3 server whose simple
// bind is a sign-in with password and appended code, in front of
// stepgate's own small directory of its accounts.
package ldap

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"

	"github.com/stepgate/stepgate/internal/config"
	"github.com/stepgate/stepgate/internal/store"
	"github.com/stepgate/stepgate/internal/verifier"
)

// Options configure a Server.
type Options struct {
	Config config.LDAP
	// TLS, when set, turns on StartTLS and the ldaps listener.
	TLS      *tls.Config
	Verifier *verifier.Verifier
	Store    *store.Store
	Log      *slog.Logger
}

// Server is the LDAP front end.
type Server struct {
	cfg config.LDAP
	tls *tls.Config
	v   *verifier.Verifier
	dir *directory
	// proxy, when set, is proxy mode: binds, searches and compares go
	// to the upstream directory.
	proxy *proxy
	log   *slog.Logger
	lns   []listener
	live  atomic.Int64

	mu     sync.Mutex
	conns  map[*conn]struct{}
	closed bool
}

type listener struct {
	net.Listener
	implicitTLS bool
}

// New checks the options and builds a server; Listen opens its sockets.
func New(o Options) (*Server, error) {
	if o.Verifier == nil || o.Store == nil {
		return nil, errors.New("ldap: a verifier and a store are required")
	}
	if o.Config.LDAPSListen != "" && o.TLS == nil {
		return nil, errors.New("ldap.ldaps_listen needs tls.cert_file and tls.key_file")
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	dir, err := newDirectory(o.Store, o.Config.BaseDN)
	if err != nil {
		return nil, err
	}
	if o.Config.MaxConns < 1 {
		o.Config.MaxConns = 1
	}
	s := &Server{cfg: o.Config, tls: o.TLS, v: o.Verifier, dir: dir, log: o.Log.With("service", "ldap"),
		conns: map[*conn]struct{}{}}
	if o.Config.Upstream != nil {
		if s.proxy, err = newProxy(o.Config.Upstream, s.log); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Listen opens the plain (StartTLS-capable) and, when configured, the
// ldaps listeners.
func (s *Server) Listen() error {
	if s.cfg.Listen != "" && s.cfg.Listen != "off" {
		l, err := net.Listen("tcp", s.cfg.Listen)
		if err != nil {
			return fmt.Errorf("ldap.listen %s: %w", s.cfg.Listen, err)
		}
		s.lns = append(s.lns, listener{Listener: l})
	}
	if s.cfg.LDAPSListen != "" && s.cfg.LDAPSListen != "off" {
		l, err := net.Listen("tcp", s.cfg.LDAPSListen)
		if err != nil {
			s.closeListeners()
			return fmt.Errorf("ldap.ldaps_listen %s: %w", s.cfg.LDAPSListen, err)
		}
		s.lns = append(s.lns, listener{Listener: l, implicitTLS: true})
	}
	return nil
}

// Addr is the plain listener's address, or "" when it is off.
func (s *Server) Addr() string { return s.addr(false) }

// LDAPSAddr is the ldaps listener's address, or "" when it is off.
func (s *Server) LDAPSAddr() string { return s.addr(true) }

func (s *Server) addr(implicit bool) string {
	for _, l := range s.lns {
		if l.implicitTLS == implicit {
			return l.Addr().String()
		}
	}
	return ""
}

func (s *Server) closeListeners() {
	for _, l := range s.lns {
		l.Close()
	}
}

// Serve accepts connections until ctx ends, then closes the listeners and
// every connection and returns once their handlers are done.
func (s *Server) Serve(ctx context.Context) error {
	if len(s.lns) == 0 {
		if err := s.Listen(); err != nil {
			return err
		}
	}
	var wg sync.WaitGroup
	errc := make(chan error, len(s.lns))
	for _, l := range s.lns {
		s.log.Info("listening", "addr", l.Addr().String(), "tls", l.implicitTLS)
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
		c.raw.Close()
	}
	s.mu.Unlock()
	s.closeListeners()
	wg.Wait()
	return err
}

func (s *Server) accept(ctx context.Context, l listener, wg *sync.WaitGroup) error {
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
			return fmt.Errorf("ldap accept: %w", err)
		}
		if tc, ok := nc.(*net.TCPConn); ok {
			tc.SetKeepAlive(true)
		}
		if s.live.Add(1) > int64(s.cfg.MaxConns) {
			s.live.Add(-1)
			// Over the cap: say so in LDAP terms and hang up, without
			// spending a goroutine on the connection's lifetime.
			s.log.Warn("connection refused: too many connections", "remote", nc.RemoteAddr().String(), "max_conns", s.cfg.MaxConns)
			nc.SetWriteDeadline(deadline(s.cfg.ReadTimeout.D()))
			if !l.implicitTLS {
				nc.Write(encodeExtended(0, result{code: resultBusy, diagnostic: "too many connections, try again later"}, oidNoticeOfDisconnection, nil))
			}
			nc.Close()
			continue
		}
		if l.implicitTLS {
			nc = tls.Server(nc, s.tls)
		}
		c := newConn(s, nc, l.implicitTLS)
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			nc.Close()
			s.live.Add(-1)
			return nil
		}
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.serve(ctx)
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
			s.live.Add(-1)
		}()
	}
}

// Conns is the number of open client connections.
func (s *Server) Conns() int { return int(s.live.Load()) }

// Close closes the listeners of a server that will not Serve.
func (s *Server) Close() error {
	s.closeListeners()
	return nil
}
