// Package demo is the embedded POP3 server behind `make run`: the demo
// mailbox, in memory, on loopback, so that the POP3 front end has
// something real to log in to. Deletions last for the connection only.
package demo

import (
	"bufio"
	"crypto/subtle"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Server is a running demo POP3 server.
type Server struct {
	ln  net.Listener
	log *slog.Logger

	mu    sync.Mutex
	users map[string]mailbox
}

type mailbox struct {
	password string
	messages [][]byte
}

// Start listens on a free loopback port and serves until Close.
func Start(log *slog.Logger) (*Server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("demo POP3 server: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{ln: ln, log: log.With("service", "demo-pop3"), users: map[string]mailbox{}}
	go s.serve()
	return s, nil
}

// Addr is host:port of the server.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// AddUser creates (or replaces) name's mailbox, signing in with password
// and holding messages (CRLF line ends).
func (s *Server) AddUser(name, password string, messages ...[]byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.users[name] = mailbox{password: password, messages: messages}
	return nil
}

// Close stops the server.
func (s *Server) Close() error { return s.ln.Close() }

func (s *Server) serve() {
	for {
		nc, err := s.ln.Accept()
		if err != nil {
			return
		}
		go s.handle(nc)
	}
}

func (s *Server) handle(nc net.Conn) {
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(10 * time.Minute))
	br := bufio.NewReader(nc)
	w := bufio.NewWriter(nc)
	say := func(format string, args ...any) {
		fmt.Fprintf(w, format+"\r\n", args...)
		w.Flush()
	}
	say("+OK demo POP3 ready")
	var user string
	var box *mailbox
	deleted := map[int]bool{}
	for {
		line, err := br.ReadString('\n')
		if err != nil || len(line) > 1024 {
			return
		}
		verb, arg, _ := strings.Cut(strings.TrimRight(line, "\r\n"), " ")
		verb = strings.ToUpper(verb)
		msg := func() (int, []byte, bool) {
			n, err := strconv.Atoi(arg)
			if box == nil || err != nil || n < 1 || n > len(box.messages) || deleted[n] {
				say("-ERR no such message")
				return 0, nil, false
			}
			return n, box.messages[n-1], true
		}
		switch {
		case verb == "QUIT":
			say("+OK bye")
			return
		case verb == "CAPA":
			say("+OK\r\nUSER\r\nUIDL\r\nTOP\r\n.")
		case verb == "NOOP":
			say("+OK")
		case box == nil && verb == "USER":
			user = arg
			say("+OK")
		case box == nil && verb == "PASS":
			s.mu.Lock()
			b, ok := s.users[user]
			s.mu.Unlock()
			if !ok || subtle.ConstantTimeCompare([]byte(b.password), []byte(arg)) != 1 {
				say("-ERR [AUTH] Authentication failed")
				continue
			}
			box = &b
			say("+OK logged in")
		case box == nil:
			say("-ERR log in first")
		case verb == "STAT":
			n, size := 0, 0
			for i, m := range box.messages {
				if !deleted[i+1] {
					n, size = n+1, size+len(m)
				}
			}
			say("+OK %d %d", n, size)
		case verb == "LIST" || verb == "UIDL":
			if arg != "" {
				if n, m, ok := msg(); ok {
					say("+OK %d %s", n, listValue(verb, n, m))
				}
				continue
			}
			say("+OK")
			for i, m := range box.messages {
				if !deleted[i+1] {
					say("%d %s", i+1, listValue(verb, i+1, m))
				}
			}
			say(".")
		case verb == "RETR" || verb == "TOP":
			if f := strings.Fields(arg); verb == "TOP" && len(f) > 0 {
				arg = f[0] // the whole message: enough for a demo
			}
			if _, m, ok := msg(); ok {
				say("+OK %d octets", len(m))
				for _, l := range strings.SplitAfter(string(m), "\r\n") {
					if strings.HasPrefix(l, ".") {
						l = "." + l
					}
					w.WriteString(l)
				}
				say(".")
			}
		case verb == "DELE":
			if n, _, ok := msg(); ok {
				deleted[n] = true
				say("+OK")
			}
		case verb == "RSET":
			deleted = map[int]bool{}
			say("+OK")
		default:
			say("-ERR unknown command")
		}
	}
}

func listValue(verb string, n int, m []byte) string {
	if verb == "UIDL" {
		return "demo-" + strconv.Itoa(n)
	}
	return strconv.Itoa(len(m))
}
