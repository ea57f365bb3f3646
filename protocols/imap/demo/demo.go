// Package demo is the embedded demo mail server behind `make run`: an
// in-memory IMAP server (go-imap's imapmemserver) on loopback, so that the
// IMAP front end has something real to log in to. Nothing it holds
// survives a restart.
package demo

import (
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"
)

// Server is a running demo mail server.
type Server struct {
	mem *imapmemserver.Server
	srv *imapserver.Server
	ln  net.Listener
}

// Start listens on a free loopback port and serves until Close.
func Start(log *slog.Logger) (*Server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("demo mail server: %w", err)
	}
	mem := imapmemserver.New()
	srv := imapserver.New(&imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return mem.NewSession(), nil, nil
		},
		Caps: imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapIMAP4rev2: {}, imap.CapLiteralPlus: {},
			imap.CapSASLIR: {}, imap.CapIdle: {}},
		// Only stepgate on loopback talks to it.
		InsecureAuth: true,
		Logger:       slogLogger{log},
	})
	go srv.Serve(ln)
	return &Server{mem: mem, srv: srv, ln: ln}, nil
}

// Addr is host:port of the demo server.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// AddUser creates a mailbox for name, signing in with password, with a
// welcome message in its INBOX.
func (s *Server) AddUser(name, password string) error {
	u := imapmemserver.NewUser(name, password)
	if err := u.Create("INBOX", nil); err != nil {
		return err
	}
	msg := Welcome(name)
	if _, err := u.Append("INBOX", literal{strings.NewReader(msg), int64(len(msg))}, &imap.AppendOptions{}); err != nil {
		return err
	}
	s.mem.AddUser(u)
	return nil
}

// Welcome is the demo mailbox's one message for name, with CRLF line
// ends (the POP3 demo serves it too).
func Welcome(name string) string {
	return strings.ReplaceAll(fmt.Sprintf(`From: stepgate <demo@stepgate.invalid>
To: %s
Subject: Welcome to the stepgate demo mailbox
Date: %s
Content-Type: text/plain; charset=utf-8

This mailbox lives in memory, in the stepgate process, for the demo.
You reached it through stepgate's IMAP or POP3 front end with your
password and the current code from your authenticator app. Point stepgate
at your real mail server with --imap-upstream and --pop3-upstream
HOST:PORT, and at its submission port with --submission-upstream.
`, name, time.Now().Format(time.RFC1123Z)), "\n", "\r\n")
}

// Close stops the server.
func (s *Server) Close() error { return s.srv.Close() }

type literal struct {
	*strings.Reader
	n int64
}

func (l literal) Size() int64 { return l.n }

type slogLogger struct{ log *slog.Logger }

func (l slogLogger) Printf(format string, args ...any) {
	if l.log != nil {
		l.log.Info(fmt.Sprintf(format, args...), "service", "demo-mail")
	}
}
