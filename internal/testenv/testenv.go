// Package testenv finds the real programs integration tests drive (slapd,
// Dovecot, OpenLDAP's clients, mail clients) and skips loudly when one is
// missing, or fails when STEPGATE_REQUIRE_INTEGRATION=1 says it must be
// there (as it is in CI).
package testenv

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Required reports whether integration tests must run rather than skip.
func Required() bool { return os.Getenv("STEPGATE_REQUIRE_INTEGRATION") == "1" }

// searchDirs are looked in after PATH: Debian puts daemons in sbin, which
// is not on an ordinary user's PATH.
var searchDirs = []string{"/usr/sbin", "/usr/local/sbin", "/sbin"}

// LookPath finds a program on PATH or in the sbin directories.
func LookPath(name string) (string, bool) {
	if p, err := exec.LookPath(name); err == nil {
		return p, true
	}
	for _, d := range searchDirs {
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, true
		}
	}
	return "", false
}

// NeedPrograms returns the paths of the named programs. When one is
// missing the test is skipped with a loud reason, or fails when
// integration tests are required.
func NeedPrograms(t testing.TB, names ...string) []string {
	t.Helper()
	var paths, missing []string
	for _, n := range names {
		if p, ok := LookPath(n); ok {
			paths = append(paths, p)
		} else {
			missing = append(missing, n)
		}
	}
	if len(missing) > 0 {
		msg := "INTEGRATION TEST SKIPPED: missing " + strings.Join(missing, ", ") +
			" (install with .ci/run, or apt-get install slapd ldap-utils dovecot-imapd dovecot-pop3d postfix swaks msmtp isync fetchmail offlineimap3 curl apache2 nslcd libpam-ldapd pamtester postgresql nginx libnginx-mod-mail)"
		if Required() {
			t.Fatal(msg + "; STEPGATE_REQUIRE_INTEGRATION=1 makes this a failure")
		}
		t.Skip(msg)
	}
	return paths
}

// NeedProgram is NeedPrograms for one program.
func NeedProgram(t testing.TB, name string) string {
	t.Helper()
	return NeedPrograms(t, name)[0]
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
