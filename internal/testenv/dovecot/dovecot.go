// Package dovecot starts a real Dovecot IMAP server for tests: a
// throwaway configuration in a temp folder, passwd-file users, maildirs,
// one loopback port, and nothing left behind when the test ends.
package dovecot

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stepgate/stepgate/internal/testenv"
)

// Options shape the server.
type Options struct {
	// Users maps user names to passwords (stored {PLAIN}).
	Users map[string]string
	// MasterUser and MasterPassword add a Dovecot master user, who may
	// log in as anyone (PLAIN authzid, or user*master with LOGIN).
	MasterUser, MasterPassword string
	// PassDB, when set, replaces the passdb block (e.g. an LDAP passdb).
	PassDB string
	// UsernameFormat, when set, is auth_username_format: how Dovecot maps
	// a login name before looking it up ("%Ln": lower case, no domain).
	UsernameFormat string
	// NoFailureDelay turns off auth_failure_delay (2 s by default), for
	// tests that make many failed logins on purpose. Dovecot still answers
	// a failure on its next half-second tick.
	NoFailureDelay bool
	// POP3 turns on Dovecot's POP3 on a second loopback port (POP3Addr).
	POP3 bool
	// AuthSocket opens Dovecot's auth service on a socket (AuthSocket)
	// for Postfix's SASL, as a mail system's submission uses it.
	AuthSocket bool
}

// Server is a running (or stopped) Dovecot.
type Server struct {
	t        testing.TB
	dir      string
	conf     string
	port     int
	pop3Port int
	uid, gid int
	proc     *testenv.Process
	seq      atomic.Int64
}

// Start writes the configuration and starts Dovecot. It skips (or fails
// under STEPGATE_REQUIRE_INTEGRATION=1) when Dovecot is not installed.
func Start(t testing.TB, o Options) *Server {
	t.Helper()
	testenv.NeedPrograms(t, "dovecot")
	dir := t.TempDir()
	// Dovecot's unprivileged processes must reach the folder.
	for d := dir; d != "/" && d != "."; d = filepath.Dir(d) {
		if os.Getuid() == 0 {
			os.Chmod(d, 0o755)
		}
		if d == os.TempDir() {
			break
		}
	}
	s := &Server{t: t, dir: dir, port: testenv.FreePort(t), uid: os.Getuid(), gid: os.Getgid()}
	loginUser, internalUser := currentUser(t), currentUser(t)
	if os.Getuid() == 0 {
		// Dovecot refuses root for its login processes and for mail.
		loginUser, internalUser = "dovenull", "dovecot"
		u, err := user.Lookup("dovecot")
		if err != nil {
			t.Fatalf("dovecot: running as root needs the dovecot user: %v", err)
		}
		s.uid, _ = strconv.Atoi(u.Uid)
		s.gid, _ = strconv.Atoi(u.Gid)
	}
	for _, d := range []string{"run", "state", "mail", "home"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	s.chown(filepath.Join(dir, "mail"))
	s.chown(filepath.Join(dir, "home"))
	var users strings.Builder
	for name, pw := range o.Users {
		fmt.Fprintf(&users, "%s:{PLAIN}%s::::::\n", name, pw)
	}
	if err := os.WriteFile(filepath.Join(dir, "users"), []byte(users.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	passdb := fmt.Sprintf("passdb {\n  driver = passwd-file\n  args = scheme=PLAIN username_format=%%u %s\n}\n", filepath.Join(dir, "users"))
	if o.PassDB != "" {
		passdb = o.PassDB
	}
	master := ""
	if o.UsernameFormat != "" {
		master = "auth_username_format = " + o.UsernameFormat + "\n"
	}
	if o.NoFailureDelay {
		master += "auth_failure_delay = 0\n"
	}
	if o.MasterUser != "" {
		mf := filepath.Join(dir, "masters")
		if err := os.WriteFile(mf, []byte(fmt.Sprintf("%s:{PLAIN}%s\n", o.MasterUser, o.MasterPassword)), 0o644); err != nil {
			t.Fatal(err)
		}
		master += fmt.Sprintf("auth_master_user_separator = *\npassdb {\n  driver = passwd-file\n  master = yes\n  args = %s\n  pass = yes\n}\n", mf)
	}
	protocols, pop3 := "imap", 0
	if o.POP3 {
		s.pop3Port = testenv.FreePort(t)
		protocols, pop3 = "imap pop3", s.pop3Port
	}
	if o.AuthSocket {
		// Postfix's smtpd runs as the postfix user.
		master += fmt.Sprintf("service auth {\n  unix_listener %s {\n    mode = 0666\n  }\n}\n", s.AuthSocket())
	}
	conf := fmt.Sprintf(`base_dir = %[1]s/run
state_dir = %[1]s/state
log_path = %[1]s/dovecot.log
protocols = %[9]s
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
default_login_user = %[2]s
default_internal_user = %[3]s
first_valid_uid = 1
mail_location = maildir:%[1]s/mail/%%u
login_trusted_networks = 127.0.0.0/8
imap_capability = +IDLE
mail_max_userip_connections = 100
%[4]s%[5]suserdb {
  driver = static
  args = uid=%[6]d gid=%[7]d home=%[1]s/home/%%u
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = %[8]d
  }
  inet_listener imaps {
    port = 0
  }
}
service pop3-login {
  inet_listener pop3 {
    address = 127.0.0.1
    port = %[10]d
  }
  inet_listener pop3s {
    port = 0
  }
}
service submission-login {
  inet_listener submission {
    port = 0
  }
}
`, dir, loginUser, internalUser, master, passdb, s.uid, s.gid, s.port, protocols, pop3)
	s.conf = filepath.Join(dir, "dovecot.conf")
	if err := os.WriteFile(s.conf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	s.proc = &testenv.Process{T: t, Name: "dovecot", Addr: s.Addr(), Log: s.Log, Command: func() *exec.Cmd {
		return exec.Command(testenv.NeedProgram(t, "dovecot"), "-F", "-c", s.conf)
	}}
	s.Start()
	t.Cleanup(s.Stop)
	return s
}

func currentUser(t testing.TB) string {
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	return u.Username
}

func (s *Server) chown(path string) {
	if os.Getuid() == 0 {
		os.Chown(path, s.uid, s.gid)
	}
}

// Addr is the IMAP listener, 127.0.0.1:PORT.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// POP3Addr is the POP3 listener (Options.POP3), 127.0.0.1:PORT.
func (s *Server) POP3Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.pop3Port)) }

// AuthSocket is the path of the auth socket (Options.AuthSocket).
func (s *Server) AuthSocket() string { return filepath.Join(s.dir, "run", "auth-postfix") }

// Maildir is user's maildir.
func (s *Server) Maildir(user string) string { return filepath.Join(s.dir, "mail", user) }

// Port is the IMAP port.
func (s *Server) Port() int { return s.port }

// Log is Dovecot's log so far.
func (s *Server) Log() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "dovecot.log"))
	return string(b)
}

// Start starts a stopped server again on the same port.
func (s *Server) Start() { s.proc.Start() }

// Stop stops the server and waits until its port is closed.
func (s *Server) Stop() { s.proc.Stop() }

// Deliver puts one message into user's INBOX (a maildir file), as a local
// delivery agent would.
func (s *Server) Deliver(user string, msg []byte) {
	s.t.Helper()
	md := filepath.Join(s.dir, "mail", user)
	for _, sub := range []string{"", "new", "cur", "tmp"} {
		if err := os.MkdirAll(filepath.Join(md, sub), 0o755); err != nil {
			s.t.Fatal(err)
		}
		s.chown(filepath.Join(md, sub))
	}
	name := fmt.Sprintf("%d.M%dP%d.stepgate-test", time.Now().Unix(), s.seq.Add(1), os.Getpid())
	tmp := filepath.Join(md, "tmp", name)
	if err := os.WriteFile(tmp, msg, 0o644); err != nil {
		s.t.Fatal(err)
	}
	s.chown(tmp)
	if err := os.Rename(tmp, filepath.Join(md, "new", name)); err != nil {
		s.t.Fatal(err)
	}
}

// Message is a small RFC 5322 message numbered n, body padded to size
// bytes, with CRLF line ends.
func Message(n, size int) []byte {
	head := fmt.Sprintf("From: sender@example.org\r\nTo: alice@example.org\r\nSubject: message %d\r\nMessage-ID: <%d@stepgate.test>\r\nDate: Tue, 24 Nov 2026 12:00:00 +0000\r\n\r\n", n, n)
	body := []byte(strings.Repeat("stepgate test line of text.....\r\n", max(1, (size-len(head))/33)))
	return append([]byte(head), body...)
}
