// Package apache runs a throwaway Apache httpd with mod_authnz_ldap for
// tests: one location behind HTTP basic authentication whose passwords
// are checked by an LDAP bind, as applications in front of stepgate do.
package apache

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stepgate/stepgate/internal/testenv"
)

// Options configure the server.
type Options struct {
	// LDAPURL is mod_authnz_ldap's AuthLDAPURL, e.g.
	// ldap://127.0.0.1:3389/ou=people,dc=example,dc=org?uid.
	LDAPURL string
	// BindDN and BindPassword are the account Apache searches with (a
	// stepgate service account); empty searches anonymously.
	BindDN, BindPassword string
	// Cache leaves mod_ldap's caches at their defaults (600 s); off, the
	// caches are off, as the README says to run it in front of stepgate.
	Cache bool
}

// Server is a running httpd.
type Server struct {
	dir  string
	port int
	proc *testenv.Process
}

// modules are what the one protected location needs; Debian builds even
// the MPM as a module.
var modules = []string{"mpm_prefork", "authn_core", "authz_core", "authz_user", "auth_basic", "status", "ldap", "authnz_ldap"}

// Start starts httpd in the foreground (-X) on a free loopback port,
// with a configuration in a temporary folder, and stops it when the test
// ends. It skips (or fails, when integration tests are required) if
// apache2 is not installed.
func Start(t testing.TB, o Options) *Server {
	t.Helper()
	bin := testenv.NeedProgram(t, "apache2")
	modDir := "/usr/lib/apache2/modules"
	for _, m := range modules {
		if _, err := os.Stat(filepath.Join(modDir, "mod_"+m+".so")); err != nil {
			msg := fmt.Sprintf("INTEGRATION TEST SKIPPED: apache2 module %s missing (%v)", m, err)
			if testenv.Required() {
				t.Fatal(msg)
			}
			t.Skip(msg)
		}
	}
	s := &Server{dir: t.TempDir(), port: testenv.FreePort(t)}
	var b strings.Builder
	fmt.Fprintf(&b, "ServerRoot %s\nServerName 127.0.0.1\nListen %s\nPidFile %s\nErrorLog %s\nLogLevel info\n",
		s.dir, s.Addr(), filepath.Join(s.dir, "httpd.pid"), s.logFile())
	if os.Getuid() == 0 {
		// httpd will not serve as root; its children take this user.
		b.WriteString("User nobody\nGroup nogroup\n")
	}
	for _, m := range modules {
		fmt.Fprintf(&b, "LoadModule %s_module %s/mod_%s.so\n", m, modDir, m)
	}
	if !o.Cache {
		b.WriteString("LDAPCacheEntries 0\nLDAPOpCacheEntries 0\n")
	}
	fmt.Fprintf(&b, "<Location \"/\">\n  SetHandler server-status\n  AuthType Basic\n  AuthName stepgate\n  AuthBasicProvider ldap\n  AuthLDAPURL %q\n", o.LDAPURL)
	if o.BindDN != "" {
		fmt.Fprintf(&b, "  AuthLDAPBindDN %q\n  AuthLDAPBindPassword %q\n", o.BindDN, o.BindPassword)
	}
	b.WriteString("  Require valid-user\n</Location>\n")
	conf := filepath.Join(s.dir, "httpd.conf")
	if err := os.WriteFile(conf, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	s.proc = &testenv.Process{T: t, Name: "apache2", Addr: s.Addr(), Log: s.Log, Command: func() *exec.Cmd {
		return exec.Command(bin, "-X", "-f", conf)
	}}
	s.proc.Start()
	t.Cleanup(s.proc.Stop)
	return s
}

func (s *Server) logFile() string { return filepath.Join(s.dir, "error.log") }

// Addr is the address httpd listens on.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// URL is the protected location.
func (s *Server) URL() string { return "http://" + s.Addr() + "/" }

// Log is httpd's error log.
func (s *Server) Log() string {
	b, _ := os.ReadFile(s.logFile())
	return string(b)
}

// Get fetches the protected location with user and password through
// curl and returns the HTTP status.
func (s *Server) Get(t testing.TB, user, password string) int {
	t.Helper()
	curl := testenv.NeedProgram(t, "curl")
	out, err := exec.Command(curl, "-sS", "--max-time", "20", "-o", os.DevNull, "-w", "%{http_code}",
		"-u", user+":"+password, s.URL()).Output()
	if err != nil {
		t.Fatalf("curl: %v (%s)\n%s", err, out, s.Log())
	}
	code, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatalf("curl printed %q", out)
	}
	return code
}
