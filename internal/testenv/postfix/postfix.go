// Package postfix starts a real Postfix for tests: a throwaway instance
// with its own config, queue and data directories in a temp folder, one
// loopback submission port with SASL through a Dovecot auth socket, and
// delivery to maildirs under the folder. Postfix's master must run as
// root; elsewhere the test skips loudly (or fails when integration tests
// are required).
package postfix

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stepgate/stepgate/internal/testenv"
)

// Options shape the server.
type Options struct {
	// AuthSocket is Dovecot's auth socket (dovecot.Options.AuthSocket),
	// which checks the SASL logins.
	AuthSocket string
	// Domain is the domain whose mail is delivered to maildirs, one per
	// local part (example.org by default).
	Domain string
	// Users are the local parts that receive mail.
	Users []string
}

// Server is a running Postfix.
type Server struct {
	t    testing.TB
	dir  string
	port int
	proc *testenv.Process
	out  *testenv.Buffer // what postfix itself prints (start-up errors)
}

// Start writes the configuration and starts Postfix in the foreground.
func Start(t testing.TB, o Options) *Server {
	t.Helper()
	bin := testenv.NeedPrograms(t, "postfix", "postconf")
	if os.Getuid() != 0 {
		msg := "INTEGRATION TEST SKIPPED: Postfix's master runs only as root"
		if testenv.Required() {
			t.Fatal(msg + "; STEPGATE_REQUIRE_INTEGRATION=1 makes this a failure")
		}
		t.Skip(msg)
	}
	pf, err := user.Lookup("postfix")
	if err != nil {
		t.Fatalf("postfix: the postfix user is missing: %v", err)
	}
	if o.Domain == "" {
		o.Domain = "example.org"
	}
	dir := t.TempDir()
	for d := dir; d != "/" && d != "."; d = filepath.Dir(d) {
		os.Chmod(d, 0o755)
		if d == os.TempDir() {
			break
		}
	}
	s := &Server{t: t, dir: dir, port: testenv.FreePort(t), out: &testenv.Buffer{}}
	uid, _ := strconv.Atoi(pf.Uid)
	gid, _ := strconv.Atoi(pf.Gid)
	for _, d := range []string{"etc", "queue", "data", "mail"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.Chown(filepath.Join(dir, "data"), uid, gid)
	os.Chown(filepath.Join(dir, "mail"), uid, gid)
	var vmap strings.Builder
	for _, u := range o.Users {
		fmt.Fprintf(&vmap, "%s@%s %s/\n", u, o.Domain, u)
	}
	write := func(name, content string) {
		if err := os.WriteFile(filepath.Join(dir, "etc", name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("vmailbox", vmap.String())
	// The main.cf of a loopback-only submission server: no DNS, no
	// relaying, SASL users only, XCLIENT from loopback (stepgate names
	// the real client), delivery by the virtual agent as the postfix user.
	write("main.cf", fmt.Sprintf(`compatibility_level = 3.6
config_directory = %[1]s/etc
queue_directory = %[1]s/queue
data_directory = %[1]s/data
mail_owner = postfix
setgid_group = postdrop
maillog_file = %[1]s/postfix.log
maillog_file_prefixes = %[1]s
myhostname = postfix.stepgate.test
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtp_dns_support_level = disabled
disable_dns_lookups = yes
smtpd_peername_lookup = no
biff = no
alias_maps =
alias_database =
local_recipient_maps =
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = dovecot
smtpd_sasl_path = %[2]s
smtpd_tls_security_level = none
smtpd_relay_restrictions = permit_sasl_authenticated, reject
smtpd_recipient_restrictions = permit_sasl_authenticated, reject
smtpd_authorized_xclient_hosts = 127.0.0.0/8
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
smtpd_error_sleep_time = 0
message_size_limit = 10240000
virtual_mailbox_domains = %[3]s
virtual_mailbox_base = %[1]s/mail
virtual_mailbox_maps = texthash:%[1]s/etc/vmailbox
virtual_minimum_uid = 1
virtual_uid_maps = static:%[4]d
virtual_gid_maps = static:%[5]d
`, dir, o.AuthSocket, o.Domain, uid, gid))
	dist, err := os.ReadFile("/usr/share/postfix/master.cf.dist")
	if err != nil {
		t.Fatalf("postfix: %v", err)
	}
	var master strings.Builder
	for _, l := range strings.Split(string(dist), "\n") {
		if strings.HasPrefix(l, "smtp      inet") {
			l = fmt.Sprintf("127.0.0.1:%d inet n - n - - smtpd", s.port)
		}
		master.WriteString(l + "\n")
	}
	write("master.cf", master.String())
	s.proc = &testenv.Process{T: t, Name: "postfix", Addr: s.Addr(), Log: s.Log, Command: func() *exec.Cmd {
		cmd := exec.Command(bin[0], "-c", filepath.Join(dir, "etc"), "start-fg")
		cmd.Stdout, cmd.Stderr = s.out, s.out
		return cmd
	}}
	s.proc.Start()
	t.Cleanup(s.Stop)
	return s
}

// Addr is the submission listener, 127.0.0.1:PORT.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// Log is Postfix's log so far.
func (s *Server) Log() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "postfix.log"))
	return s.out.String() + string(b)
}

// Maildir is where mail for user (a local part) is delivered.
func (s *Server) Maildir(user string) string { return filepath.Join(s.dir, "mail", user) }

// Stop stops Postfix.
func (s *Server) Stop() {
	exec.Command(testenv.NeedProgram(s.t, "postfix"), "-c", filepath.Join(s.dir, "etc"), "stop").Run()
	s.proc.Stop()
}
