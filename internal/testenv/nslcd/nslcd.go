// Package nslcd runs nss-pam-ldapd's nslcd in the foreground for tests,
// and drives pam_ldap through it with pamtester, without touching the
// machine's own files: nslcd reads only /etc/nslcd.conf and listens only
// on /run/nslcd/socket, and PAM reads /etc/pam.d/SERVICE, so each runs in
// a private mount namespace (unshare) where a temp nslcd.conf, a temp
// /run and a temp pam.d are bind-mounted over those paths. Outside the
// namespace nothing changes, and the mounts go with the processes.
package nslcd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stepgate/stepgate/internal/testenv"
)

// Service is the PAM service the temp pam.d defines: pam_ldap alone.
const Service = "stepgate-test"

// Options shape nslcd.conf.
type Options struct {
	// URI is the directory, e.g. ldap://127.0.0.1:3389/.
	URI string
	// Base is the search base.
	Base string
	// BindDN and BindPW are nslcd's own account for its lookups; empty:
	// anonymous.
	BindDN, BindPW string
	// Extra lines go at the end of nslcd.conf as they are.
	Extra []string
}

// Daemon is a running nslcd.
type Daemon struct {
	t       testing.TB
	dir     string
	unshare string
	pam     string
	cmd     *exec.Cmd
	waited  chan struct{}
	log     testenv.Buffer
}

// Start writes the configuration and starts `nslcd -d`. It skips (or
// fails under STEPGATE_REQUIRE_INTEGRATION=1) when nslcd, pamtester or
// unshare is missing.
func Start(t testing.TB, o Options) *Daemon {
	t.Helper()
	paths := testenv.NeedPrograms(t, "nslcd", "pamtester", "unshare", "mount")
	if _, err := os.Stat("/etc/nslcd.conf"); err != nil {
		// The bind mount needs a file to cover; the package installs one.
		msg := "INTEGRATION TEST SKIPPED: /etc/nslcd.conf missing (install nslcd with .ci/run)"
		if testenv.Required() {
			t.Fatal(msg + "; STEPGATE_REQUIRE_INTEGRATION=1 makes this a failure")
		}
		t.Skip(msg)
	}
	pamLDAP := findPAMModule()
	if pamLDAP == "" {
		msg := "INTEGRATION TEST SKIPPED: pam_ldap.so missing (apt-get install libpam-ldapd)"
		if testenv.Required() {
			t.Fatal(msg + "; STEPGATE_REQUIRE_INTEGRATION=1 makes this a failure")
		}
		t.Skip(msg)
	}
	d := &Daemon{t: t, dir: t.TempDir(), unshare: paths[2], pam: paths[1]}
	for _, sub := range []string{"run/nslcd", "pam.d"} {
		if err := os.MkdirAll(filepath.Join(d.dir, sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	var conf strings.Builder
	fmt.Fprintf(&conf, "uri %s\nbase %s\n", o.URI, o.Base)
	if o.BindDN != "" {
		fmt.Fprintf(&conf, "binddn %s\nbindpw %s\n", o.BindDN, o.BindPW)
	}
	for _, l := range o.Extra {
		conf.WriteString(l + "\n")
	}
	// nslcd refuses a configuration that others may read when it holds
	// bindpw; 0600 as root is what it expects.
	if err := os.WriteFile(filepath.Join(d.dir, "nslcd.conf"), []byte(conf.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	pamConf := fmt.Sprintf("auth required %s\naccount required %s\n", pamLDAP, pamLDAP)
	if err := os.WriteFile(filepath.Join(d.dir, "pam.d", Service), []byte(pamConf), 0o644); err != nil {
		t.Fatal(err)
	}
	d.cmd = d.inNamespace(context.Background(),
		fmt.Sprintf("mount --bind %s /etc/nslcd.conf && exec %s -d", filepath.Join(d.dir, "nslcd.conf"), paths[0]))
	d.cmd.Stdout, d.cmd.Stderr = &d.log, &d.log
	if err := d.cmd.Start(); err != nil {
		t.Fatalf("nslcd: %v", err)
	}
	d.waited = make(chan struct{})
	go func() { d.cmd.Wait(); close(d.waited) }()
	t.Cleanup(d.stop)
	socket := filepath.Join(d.dir, "run/nslcd/socket")
	for deadline := time.Now().Add(20 * time.Second); ; {
		if _, err := os.Stat(socket); err == nil {
			return d
		}
		select {
		case <-d.waited:
			t.Fatalf("nslcd exited at start-up:\n%s", d.log.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("nslcd made no socket within 20s:\n%s", d.log.String())
		}
	}
}

// inNamespace runs script with sh in a private mount namespace in which
// the temp /run and pam.d cover the machine's.
func (d *Daemon) inNamespace(ctx context.Context, script string, args ...string) *exec.Cmd {
	ns := []string{"--mount", "--propagation", "private"}
	if os.Geteuid() != 0 {
		// Unprivileged: a user namespace in which we are root may mount.
		ns = append([]string{"--map-root-user"}, ns...)
	}
	pre := fmt.Sprintf("mount --bind %s /run && mount --bind %s /etc/pam.d && ",
		filepath.Join(d.dir, "run"), filepath.Join(d.dir, "pam.d"))
	argv := append(append(ns, "sh", "-ec", pre+script, "sh"), args...)
	cmd := exec.CommandContext(ctx, d.unshare, argv...)
	// LDAPCONF: libldap in nslcd must not read the machine's ldap.conf.
	cmd.Env = append(os.Environ(), "LDAPCONF=/dev/null", "LDAPRC=/dev/null")
	return cmd
}

func (d *Daemon) stop() {
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.waited:
	case <-time.After(15 * time.Second):
		d.cmd.Process.Kill()
		<-d.waited
	}
}

// Log is what nslcd has printed so far (its debug log).
func (d *Daemon) Log() string { return d.log.String() }

// Authenticate runs `pamtester SERVICE USER authenticate acct_mgmt` with
// password as the typed password. It returns pamtester's output and
// whether PAM said yes to both.
func (d *Daemon) Authenticate(user, password string) (bool, string) {
	d.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := d.inNamespace(ctx, `exec "$@"`, d.pam, "-v", Service, user, "authenticate", "acct_mgmt")
	cmd.Stdin = strings.NewReader(password + "\n")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return true, string(out)
	case errors.As(err, &ee):
		return false, string(out)
	}
	d.t.Fatalf("pamtester: %v", err)
	return false, ""
}

// findPAMModule is the path of pam_ldap.so in the usual module folders.
func findPAMModule() string {
	for _, pattern := range []string{"/lib/*/security/pam_ldap.so", "/usr/lib/*/security/pam_ldap.so", "/lib/security/pam_ldap.so", "/usr/lib/security/pam_ldap.so"} {
		if m, _ := filepath.Glob(pattern); len(m) > 0 {
			return m[0]
		}
	}
	return ""
}
