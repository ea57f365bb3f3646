// Package demo is the embedded submission sink behind `make run`: an
// in-memory SMTP server (go-smtp) on loopback that signs users in with
// AUTH PLAIN, accepts their messages and keeps only a count and a log
// line, so that the submission front end has something real to send to.
package demo

import (
	"crypto/subtle"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"

	"github.com/emersion/go-sasl"
	gosmtp "github.com/emersion/go-smtp"
)

// Server is a running submission sink.
type Server struct {
	srv *gosmtp.Server
	ln  net.Listener
	log *slog.Logger

	mu       sync.Mutex
	users    map[string]string
	accepted atomic.Int64
}

// Start listens on a free loopback port and serves until Close.
func Start(log *slog.Logger) (*Server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("demo submission server: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{ln: ln, log: log.With("service", "demo-submission"), users: map[string]string{}}
	s.srv = gosmtp.NewServer(gosmtp.BackendFunc(func(*gosmtp.Conn) (gosmtp.Session, error) { return &session{s: s}, nil }))
	s.srv.Domain = "demo.stepgate.invalid"
	s.srv.AllowInsecureAuth = true // only stepgate on loopback talks to it
	s.srv.MaxMessageBytes = 10 << 20
	go s.srv.Serve(ln)
	return s, nil
}

// Addr is host:port of the server.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// AddUser lets name sign in with password.
func (s *Server) AddUser(name, password string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.users[name] = password
	return nil
}

// Accepted is how many messages the sink has taken.
func (s *Server) Accepted() int64 { return s.accepted.Load() }

// Close stops the server.
func (s *Server) Close() error { return s.srv.Close() }

type session struct {
	s    *Server
	user string
}

func (x *session) AuthMechanisms() []string { return []string{sasl.Plain} }

func (x *session) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, user, password string) error {
		x.s.mu.Lock()
		pw, ok := x.s.users[user]
		x.s.mu.Unlock()
		if !ok || subtle.ConstantTimeCompare([]byte(pw), []byte(password)) != 1 {
			return gosmtp.ErrAuthFailed
		}
		x.user = user
		return nil
	}), nil
}

func (x *session) Mail(string, *gosmtp.MailOptions) error { return x.authed() }
func (x *session) Rcpt(string, *gosmtp.RcptOptions) error { return x.authed() }

func (x *session) authed() error {
	if x.user == "" {
		return gosmtp.ErrAuthRequired
	}
	return nil
}

func (x *session) Data(r io.Reader) error {
	n, err := io.Copy(io.Discard, r)
	if err != nil {
		return err
	}
	x.s.accepted.Add(1)
	x.s.log.Info("demo submission: message accepted and dropped", "user", x.user, "bytes", n)
	return nil
}

func (x *session) Reset()        {}
func (x *session) Logout() error { return nil }
