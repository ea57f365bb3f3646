// Package slapd starts a real OpenLDAP slapd for tests and benchmarks: a
// throwaway slapd.conf and mdb database in a temp folder, one loopback
// port, optionally the otp overlay (password+TOTP binds in slapd itself),
// and nothing left behind.
package slapd

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/stepgate/stepgate/internal/testenv"
)

// Suffix is the directory's base DN.
const Suffix = "dc=example,dc=org"

// Options shape the server.
type Options struct {
	// OTP loads the otp overlay: binds of users with a TOTP token check
	// password followed by the current code.
	OTP bool
	// NoSync turns durable commits off (mdb's dbnosync).
	NoSync bool
	// CertFile and KeyFile turn on StartTLS and an ldaps listener.
	CertFile, KeyFile string
	// Quiet turns slapd's per-operation log off, as a production slapd
	// runs (benchmarks); tests keep it to see what reached slapd.
	Quiet bool
	// LDIF is loaded with slapadd before the first start (fast, for
	// thousands of entries); the base entries are always there.
	LDIF string
	// MemberOf loads the memberof overlay: groupOfNames entries added
	// through the running server (Modify, not LDIF: slapadd passes no
	// overlay) give their members a memberOf value.
	MemberOf bool
	// RestrictReads refuses anonymous reads, as hardened directories and
	// Active Directory do: anonymous clients may only bind; bound users
	// read everything but passwords and secrets.
	RestrictReads bool
	// PasswordModules loads pw-sha2 and argon2, so that slapd checks
	// {SSHA256}, {SSHA512} and {ARGON2} passwords too.
	PasswordModules bool
	// Proxy makes this slapd OpenLDAP's own proxy (back-ldap) in front
	// of the directory at that URL instead of holding entries: binds and
	// searches are passed on as they are, each client on its own
	// upstream connection, as a plain back-ldap set-up runs. LDIF and
	// the overlays are ignored.
	Proxy string
}

// Server is a running (or stopped) slapd.
type Server struct {
	t         testing.TB
	dir, conf string
	port      int
	tlsPort   int
	proc      *testenv.Process
	logMu     sync.Mutex
	log       bytes.Buffer
}

// RootDN and RootPW are the directory manager.
const (
	RootDN = "cn=admin," + Suffix
	RootPW = "admin-secret"
)

// Start writes the configuration, loads the base entries and starts
// slapd. It skips (or fails under STEPGATE_REQUIRE_INTEGRATION=1) when
// OpenLDAP's server is not installed.
func Start(t testing.TB, o Options) *Server {
	t.Helper()
	testenv.NeedPrograms(t, "slapd", "slapadd")
	dir := t.TempDir()
	s := &Server{t: t, dir: dir, port: testenv.FreePort(t)}
	if err := os.MkdirAll(filepath.Join(dir, "db"), 0o700); err != nil {
		t.Fatal(err)
	}
	var conf strings.Builder
	for _, schema := range []string{"core", "cosine", "inetorgperson", "nis"} {
		fmt.Fprintf(&conf, "include /etc/ldap/schema/%s.schema\n", schema)
	}
	fmt.Fprintf(&conf, "modulepath /usr/lib/ldap\nmoduleload back_mdb\n")
	if o.Proxy != "" {
		conf.WriteString("moduleload back_ldap\n")
	}
	if o.OTP {
		conf.WriteString("moduleload otp\n")
	}
	if o.MemberOf {
		conf.WriteString("moduleload memberof\n")
	}
	if o.PasswordModules {
		conf.WriteString("moduleload pw-sha2\nmoduleload argon2\n")
	}
	fmt.Fprintf(&conf, "pidfile %[1]s/slapd.pid\nargsfile %[1]s/slapd.args\n", dir)
	if o.CertFile != "" {
		s.tlsPort = testenv.FreePort(t)
		fmt.Fprintf(&conf, "TLSCertificateFile %s\nTLSCertificateKeyFile %s\n", o.CertFile, o.KeyFile)
	}
	if o.Proxy != "" {
		return s.startProxy(t, o, &conf)
	}
	fmt.Fprintf(&conf, "sizelimit unlimited\n\ndatabase mdb\nmaxsize 1073741824\nsuffix %q\nrootdn %q\nrootpw %s\ndirectory %s/db\nindex objectClass,uid eq\n",
		Suffix, RootDN, RootPW, dir)
	if o.NoSync {
		conf.WriteString("dbnosync\n")
	}
	if o.OTP {
		conf.WriteString("overlay otp\n")
	}
	if o.MemberOf {
		conf.WriteString("overlay memberof\nmemberof-group-oc groupOfNames\nmemberof-member-ad member\nmemberof-memberof-ad memberOf\nmemberof-refint TRUE\n")
	}
	secrets := "userPassword"
	if o.OTP {
		secrets += ",oathSecret" // known only with the otp module's schema
	}
	readers := "by * read"
	if o.RestrictReads {
		readers = "by anonymous auth\n  by users read"
	}
	conf.WriteString("access to attrs=" + secrets + "\n  by anonymous auth\n  by * none\naccess to *\n  " + readers + "\n")
	s.conf = filepath.Join(dir, "slapd.conf")
	if err := os.WriteFile(s.conf, []byte(conf.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	base := fmt.Sprintf("dn: %s\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: example\n\n"+
		"dn: ou=people,%s\nobjectClass: organizationalUnit\nou: people\n\n"+
		"dn: ou=otp,%s\nobjectClass: organizationalUnit\nou: otp\n\n"+
		"dn: ou=groups,%s\nobjectClass: organizationalUnit\nou: groups\n\n", Suffix, Suffix, Suffix, Suffix)
	if o.OTP {
		base += OTPParamsLDIF()
	}
	s.slapadd(base + o.LDIF)
	s.run(t, o)
	return s
}

// startProxy finishes conf as a back-ldap database in front of o.Proxy
// and starts it.
func (s *Server) startProxy(t testing.TB, o Options, conf *strings.Builder) *Server {
	t.Helper()
	// No idassert, no rebind: each client's bind is passed on, on an
	// upstream connection of its own that its searches then use.
	fmt.Fprintf(conf, "sizelimit unlimited\n\ndatabase ldap\nsuffix %q\nuri %q\naccess to *\n  by * read\n", Suffix, o.Proxy)
	s.conf = filepath.Join(s.dir, "slapd.conf")
	if err := os.WriteFile(s.conf, []byte(conf.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	s.run(t, o)
	return s
}

// run starts slapd on the written configuration and stops it at the
// end of the test.
func (s *Server) run(t testing.TB, o Options) {
	t.Helper()
	urls := s.URL() + "/"
	if s.tlsPort != 0 {
		urls += " " + s.LDAPSURL() + "/"
	}
	s.proc = &testenv.Process{T: t, Name: "slapd", Addr: s.Addr(), Log: s.Log, Command: func() *exec.Cmd {
		// -d keeps slapd in the foreground; "stats" logs each operation.
		level := "stats"
		if o.Quiet {
			level = "0"
		}
		cmd := exec.Command(testenv.NeedProgram(t, "slapd"), "-f", s.conf, "-h", urls, "-d", level)
		cmd.Stderr = lockedWriter{s}
		return cmd
	}}
	s.Start()
	t.Cleanup(s.Stop)
}

func (s *Server) slapadd(ldif string) {
	s.t.Helper()
	f := filepath.Join(s.dir, "load.ldif")
	if err := os.WriteFile(f, []byte(ldif), 0o600); err != nil {
		s.t.Fatal(err)
	}
	out, err := exec.Command(testenv.NeedProgram(s.t, "slapadd"), "-q", "-f", s.conf, "-l", f).CombinedOutput()
	if err != nil {
		s.t.Fatalf("slapadd: %v\n%s", err, out)
	}
}

// Slapcat is the whole database as OpenLDAP's slapcat prints it (LDIF
// with operational attributes, long values folded, binary and
// non-ASCII values in base64), read while slapd runs, as an
// administrator backs a directory up.
func (s *Server) Slapcat() string {
	s.t.Helper()
	cmd := exec.Command(testenv.NeedProgram(s.t, "slapcat"), "-f", s.conf)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		s.t.Fatalf("slapcat: %v\n%s", err, stderr.String())
	}
	return string(out)
}

// Slappasswd is a userPassword value as OpenLDAP's slappasswd makes it:
// slappasswd ARGS -s pw, with the module a scheme needs loaded (pw-sha2
// for {SSHA256} and {SSHA512}, argon2 for {ARGON2}): ("-h", "{SSHA512}"),
// ("-h", "{CRYPT}", "-c", "$6$rounds=5000$%.16s").
func Slappasswd(t testing.TB, pw string, args ...string) string {
	t.Helper()
	// slappasswd keeps the last module-load only.
	joined := strings.Join(args, " ")
	switch {
	case strings.Contains(joined, "{SSHA256}"), strings.Contains(joined, "{SSHA512}"):
		args = append([]string{"-o", "module-path=/usr/lib/ldap", "-o", "module-load=pw-sha2"}, args...)
	case strings.Contains(joined, "{ARGON2}"):
		args = append([]string{"-o", "module-path=/usr/lib/ldap", "-o", "module-load=argon2"}, args...)
	}
	out, err := exec.Command(testenv.NeedProgram(t, "slappasswd"), append(args, "-s", pw)...).CombinedOutput()
	if err != nil {
		t.Fatalf("slappasswd %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// URL is ldap://127.0.0.1:PORT.
func (s *Server) URL() string { return "ldap://" + s.Addr() }

// Addr is 127.0.0.1:PORT.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// LDAPSURL is the ldaps listener, or "" without TLS.
func (s *Server) LDAPSURL() string {
	if s.tlsPort == 0 {
		return ""
	}
	return "ldaps://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(s.tlsPort))
}

// Log is slapd's stats log so far (connections, binds, searches).
func (s *Server) Log() string {
	s.logMu.Lock()
	defer s.logMu.Unlock()
	return s.log.String()
}

type lockedWriter struct{ s *Server }

func (w lockedWriter) Write(p []byte) (int, error) {
	w.s.logMu.Lock()
	defer w.s.logMu.Unlock()
	return w.s.log.Write(p)
}

// Start starts a stopped server again on the same port.
func (s *Server) Start() { s.proc.Start() }

// Stop stops the server and waits for it to exit.
func (s *Server) Stop() { s.proc.Stop() }

// Modify applies LDIF change records (changetype: add, modify, modrdn;
// records without one are adds) to the running server as the directory
// manager, with ldapmodify: the overlays see these changes.
func (s *Server) Modify(ldif string) {
	s.t.Helper()
	cmd := exec.Command(testenv.NeedProgram(s.t, "ldapmodify"), "-x", "-a", "-H", s.URL(), "-D", RootDN, "-w", RootPW)
	cmd.Env = append(os.Environ(), "LDAPCONF=/dev/null", "LDAPRC=/dev/null")
	cmd.Stdin = strings.NewReader(ldif)
	if out, err := cmd.CombinedOutput(); err != nil {
		s.t.Fatalf("ldapmodify: %v\n%s", err, out)
	}
}

// Group is a groupOfNames entry under ou=groups.
type Group struct {
	CN      string
	Members []string // DNs; a groupOfNames needs at least one
}

// DN is the group's entry.
func (g Group) DN() string { return "cn=" + g.CN + ",ou=groups," + Suffix }

// LDIF is the group's entry in LDIF.
func (g Group) LDIF() string {
	var b strings.Builder
	fmt.Fprintf(&b, "dn: %s\nobjectClass: groupOfNames\ncn: %s\n", g.DN(), g.CN)
	for _, m := range g.Members {
		fmt.Fprintf(&b, "member: %s\n", m)
	}
	b.WriteString("\n")
	return b.String()
}

// Person is one user entry under ou=people.
type Person struct {
	UID, CN, Mail string
	// Password is the userPassword value as stored ({SSHA}..., or clear).
	Password string
	// TOTPSecret, with Options.OTP, gives the user a TOTP token (raw
	// key bytes): binds then want password followed by the code.
	TOTPSecret []byte
}

// DN is the person's entry.
func (p Person) DN() string { return "uid=" + p.UID + ",ou=people," + Suffix }

// LDIF is the person's entry (and token entry) in LDIF.
func (p Person) LDIF() string {
	var b strings.Builder
	cn := p.CN
	if cn == "" {
		cn = p.UID
	}
	fmt.Fprintf(&b, "dn: %s\nobjectClass: inetOrgPerson\n", p.DN())
	if p.TOTPSecret != nil {
		fmt.Fprintf(&b, "objectClass: oathTOTPUser\noathTOTPToken: cn=%s,ou=otp,%s\n", p.UID, Suffix)
	}
	fmt.Fprintf(&b, "uid: %s\ncn: %s\nsn: %s\n", p.UID, cn, cn)
	if p.Mail != "" {
		fmt.Fprintf(&b, "mail: %s\n", p.Mail)
	}
	if p.Password != "" {
		fmt.Fprintf(&b, "userPassword:: %s\n", base64.StdEncoding.EncodeToString([]byte(p.Password)))
	}
	b.WriteString("\n")
	if p.TOTPSecret != nil {
		fmt.Fprintf(&b, "dn: cn=%s,ou=otp,%s\nobjectClass: device\nobjectClass: oathTOTPToken\ncn: %s\n"+
			"oathTOTPParams: cn=totp-params,ou=otp,%s\noathSecret:: %s\n\n",
			p.UID, Suffix, p.UID, Suffix, base64.StdEncoding.EncodeToString(p.TOTPSecret))
	}
	return b.String()
}

// OTPParamsLDIF is the shared TOTP parameters: SHA-1, 6 digits, 30 s,
// one step either side (as stepgate's default).
func OTPParamsLDIF() string {
	return fmt.Sprintf("dn: cn=totp-params,ou=otp,%s\nobjectClass: device\nobjectClass: oathTOTPParams\ncn: totp-params\n"+
		"oathOTPLength: 6\noathHMACAlgorithm: 1.2.840.113549.2.7\noathTOTPTimeStepPeriod: 30\noathTOTPTimeStepWindow: 3\n\n", Suffix)
}
