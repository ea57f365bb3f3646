// Package imap is stepgate's IMAP front end: it speaks IMAP itself until
// the client has signed in with password and appended code, then logs in
// to the real mail server and copies bytes both ways unchanged.
package imap

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
	"github.com/stepgate/stepgate/internal/verifier"
)

// Options configure a Server.
type Options struct {
	Config config.IMAP
	// Upstream is the mail server; Config.Upstream is not read.
	Upstream Upstream
	// TLS, when set, turns on STARTTLS and the imaps listener.
	TLS      *tls.Config
	Verifier *verifier.Verifier
	Log      *slog.Logger
}

// Server is the IMAP front end.
type Server struct {
	cfg  config.IMAP
	tls  *tls.Config
	v    *verifier.Verifier
	up   *upstream
	log  *slog.Logger
	lns  []listener
	live atomic.Int64

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
	if o.Verifier == nil {
		return nil, errors.New("imap: a verifier is required")
	}
	if o.Config.IMAPSListen != "" && o.TLS == nil {
		return nil, errors.New("imap.imaps_listen needs tls.cert_file and tls.key_file")
	}
	up, err := newUpstream(o.Upstream)
	if err != nil {
		return nil, err
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Config.MaxConns < 1 {
		o.Config.MaxConns = 1
	}
	return &Server{cfg: o.Config, tls: o.TLS, v: o.Verifier, up: up, log: o.Log.With("service", "imap"),
		conns: map[*conn]struct{}{}}, nil
}

// Listen opens the plain (STARTTLS-capable) and, when configured, the
// imaps listeners.
func (s *Server) Listen() error {
	if s.cfg.Listen != "" && s.cfg.Listen != "off" {
		l, err := net.Listen("tcp", s.cfg.Listen)
		if err != nil {
			return fmt.Errorf("imap.listen %s: %w", s.cfg.Listen, err)
		}
		s.lns = append(s.lns, listener{Listener: l})
	}
	if s.cfg.IMAPSListen != "" && s.cfg.IMAPSListen != "off" {
		l, err := net.Listen("tcp", s.cfg.IMAPSListen)
		if err != nil {
			s.Close()
			return fmt.Errorf("imap.imaps_listen %s: %w", s.cfg.IMAPSListen, err)
		}
		s.lns = append(s.lns, listener{Listener: l, implicitTLS: true})
	}
	return nil
}

// Addr is the plain listener's address, or "".
func (s *Server) Addr() string { return s.addr(false) }

// IMAPSAddr is the imaps listener's address, or "".
func (s *Server) IMAPSAddr() string { return s.addr(true) }

func (s *Server) addr(implicit bool) string {
	for _, l := range s.lns {
		if l.implicitTLS == implicit {
			return l.Addr().String()
		}
	}
	return ""
}

// Close closes the listeners of a server that will not Serve.
func (s *Server) Close() error {
	for _, l := range s.lns {
		l.Close()
	}
	return nil
}

// Probe checks that the mail server answers (for /readyz).
func (s *Server) Probe(ctx context.Context) error { return s.up.probe(ctx) }

// Conns is the number of open client connections.
func (s *Server) Conns() int { return int(s.live.Load()) }

// Serve accepts connections until ctx ends, then closes the listeners and
// every connection (spliced ones too) and returns once they are done.
func (s *Server) Serve(ctx context.Context) error {
	if len(s.lns) == 0 {
		if err := s.Listen(); err != nil {
			return err
		}
	}
	var wg sync.WaitGroup
	errc := make(chan error, len(s.lns))
	for _, l := range s.lns {
		s.log.Info("listening", "addr", l.Addr().String(), "tls", l.implicitTLS, "upstream", s.up.Addr)
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
		c.closeAll()
	}
	s.mu.Unlock()
	s.Close()
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
			return fmt.Errorf("imap accept: %w", err)
		}
		if tc, ok := nc.(*net.TCPConn); ok {
			tc.SetKeepAlive(true)
		}
		if s.live.Add(1) > int64(s.cfg.MaxConns) {
			s.live.Add(-1)
			s.log.Warn("connection refused: too many connections", "remote", nc.RemoteAddr().String(), "max_conns", s.cfg.MaxConns)
			if !l.implicitTLS {
				nc.SetWriteDeadline(deadline(s.cfg.PreLoginTimeout.D()))
				nc.Write([]byte("* BYE [UNAVAILABLE] Too many connections, try again later\r\n"))
			}
			nc.Close()
			continue
		}
		raw := nc
		if l.implicitTLS {
			nc = tls.Server(nc, s.tls)
		}
		c := newConn(s, raw, nc, l.implicitTLS)
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			raw.Close()
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
