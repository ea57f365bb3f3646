// Package postgres starts a real, throwaway PostgreSQL cluster for tests
// and benchmarks: initdb in a temp folder, one loopback port, the unix
// socket in that folder, password sign-in over TCP, and nothing left
// behind. Debian keeps initdb and pg_ctl in /usr/lib/postgresql/N/bin,
// off PATH; PostgreSQL refuses to run as root, so under root (CI) the
// cluster runs as nobody in a folder that nobody owns.
package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stepgate/stepgate/internal/testenv"
)

// User is the cluster's superuser, who signs in with Password.
const User = "stepgate"

// Options shape the cluster.
type Options struct {
	// NoSync turns fsync off. A test that sets it must say why: durability
	// is what the replay guard relies on, so the tests that prove the
	// guard keep the default.
	NoSync bool
}

// Server is a cluster, running or stopped.
type Server struct {
	dir      string // owned by the user the cluster runs as
	data     string
	bin      string
	port     int
	password string
	opts     Options
	cred     *syscall.Credential // nil: run as ourselves
	dbs      atomic.Int64
}

// Bin returns the folder with PostgreSQL's server programs (initdb,
// pg_ctl), the newest version installed, or an error saying what to
// install.
func Bin() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) > version(dirs[j]) })
	for _, d := range dirs {
		if executable(filepath.Join(d, "initdb")) && executable(filepath.Join(d, "pg_ctl")) {
			return d, nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil && executable(filepath.Join(filepath.Dir(p), "pg_ctl")) {
		return filepath.Dir(p), nil
	}
	return "", errors.New("PostgreSQL's initdb and pg_ctl not found in /usr/lib/postgresql/*/bin or on PATH (apt-get install postgresql)")
}

func version(binDir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return v
}

func executable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

// Need returns Bin, or skips the test loudly (fails it under
// STEPGATE_REQUIRE_INTEGRATION=1) when PostgreSQL is not installed.
func Need(t testing.TB) string {
	t.Helper()
	bin, err := Bin()
	if err != nil {
		msg := "INTEGRATION TEST SKIPPED: " + err.Error()
		if testenv.Required() {
			t.Fatal(msg + "; STEPGATE_REQUIRE_INTEGRATION=1 makes this a failure")
		}
		t.Skip(msg)
	}
	return bin
}

// Start makes and starts a cluster that lives as long as the test.
func Start(t testing.TB, o Options) *Server {
	t.Helper()
	Need(t)
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// New makes and starts a cluster; Close stops it and removes its folder.
// For a cluster shared by a package's tests (TestMain), where no test
// owns it.
func New(o Options) (*Server, error) {
	bin, err := Bin()
	if err != nil {
		return nil, err
	}
	s := &Server{bin: bin, opts: o}
	if os.Getuid() == 0 {
		if s.cred, err = nobody(); err != nil {
			return nil, err
		}
	}
	// Not t.TempDir: its parents are root's and closed to nobody.
	if s.dir, err = os.MkdirTemp("", "stepgate-pg-"); err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			s.Close()
		}
	}()
	if s.cred != nil {
		if err := os.Chown(s.dir, int(s.cred.Uid), int(s.cred.Gid)); err != nil {
			return nil, err
		}
	}
	s.data = filepath.Join(s.dir, "data")
	var pw [16]byte
	rand.Read(pw[:])
	s.password = hex.EncodeToString(pw[:])
	pwfile := filepath.Join(s.dir, "pwfile")
	if err := s.writeFile(pwfile, s.password+"\n"); err != nil {
		return nil, err
	}
	// --no-sync: initdb's own files; a test about durability stops and
	// starts the server, which syncs as configured, not the machine.
	if out, err := s.command("initdb", "-D", s.data, "-U", User, "--pwfile", pwfile, "-E", "UTF8", "--locale", "C",
		"--auth-local", "trust", "--auth-host", "scram-sha-256", "--no-sync", "--no-instructions").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("initdb: %v\n%s", err, out)
	}
	os.Remove(pwfile)
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	s.port = port
	if err := s.Start(); err != nil {
		return nil, err
	}
	ok = true
	return s, nil
}

// nobody is the unprivileged user the cluster runs as under root.
func nobody() (*syscall.Credential, error) {
	u, err := user.Lookup("nobody")
	if err != nil {
		return nil, fmt.Errorf("PostgreSQL refuses to run as root, and there is no user nobody to run it as: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (s *Server) writeFile(path, content string) error {
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		return err
	}
	if s.cred != nil {
		return os.Chown(path, int(s.cred.Uid), int(s.cred.Gid))
	}
	return nil
}

// command runs one of PostgreSQL's programs as the cluster's user, in
// the cluster's folder (nobody cannot enter root's working directory).
func (s *Server) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(s.bin, name), args...)
	cmd.Dir = s.dir
	cmd.Env = append(os.Environ(), "LC_ALL=C", "HOME="+s.dir)
	if s.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	}
	return cmd
}

// Start starts a stopped cluster again on the same port and waits until
// it takes connections.
func (s *Server) Start() error {
	o := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c max_connections=200", s.port, s.dir)
	if s.opts.NoSync {
		o += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
	}
	out, err := s.command("pg_ctl", "-D", s.data, "-l", s.LogFile(), "-o", o, "-w", "-t", "60", "start").CombinedOutput()
	if err != nil {
		return fmt.Errorf("pg_ctl start: %v\n%s\n%s", err, out, s.Log())
	}
	return nil
}

// Stop stops the cluster at once (pg_ctl's fast mode: open connections
// are ended, as an administrator's restart does) and waits until it has.
func (s *Server) Stop() error { return s.stop("fast") }

// Crash stops the cluster like a power cut (immediate mode: no
// checkpoint); what was committed is still there after Start.
func (s *Server) Crash() error { return s.stop("immediate") }

func (s *Server) stop(mode string) error {
	if _, err := os.Stat(filepath.Join(s.data, "postmaster.pid")); err != nil {
		return nil
	}
	out, err := s.command("pg_ctl", "-D", s.data, "-m", mode, "-w", "-t", "60", "stop").CombinedOutput()
	if err != nil {
		return fmt.Errorf("pg_ctl stop: %v\n%s", err, out)
	}
	return nil
}

// Freeze stops the server's processes where they are (SIGSTOP): its
// connections stay open and nothing answers, as with a host that hangs or
// a network that drops packets. thaw lets them run again.
func (s *Server) Freeze() (thaw func(), err error) {
	b, err := os.ReadFile(filepath.Join(s.data, "postmaster.pid"))
	if err != nil {
		return nil, fmt.Errorf("freeze: is the server running? %w", err)
	}
	first, _, _ := strings.Cut(string(b), "\n")
	master, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil {
		return nil, fmt.Errorf("freeze: postmaster.pid: %w", err)
	}
	pids := append([]int{master}, children(master)...)
	for _, pid := range pids {
		syscall.Kill(pid, syscall.SIGSTOP)
	}
	return func() {
		for _, pid := range pids {
			syscall.Kill(pid, syscall.SIGCONT)
		}
	}, nil
}

// children are the processes whose parent is pid (the postmaster's
// backends and helpers).
func children(pid int) []int {
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so read
		// after its closing parenthesis.
		i := strings.LastIndexByte(string(b), ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b)[i+1:])
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			out = append(out, child)
		}
	}
	return out
}

// Close stops the cluster and removes its folder.
func (s *Server) Close() {
	if s.data != "" {
		s.Crash()
	}
	if s.dir != "" {
		os.RemoveAll(s.dir)
	}
}

// Addr is 127.0.0.1:PORT.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// Password is User's password.
func (s *Server) Password() string { return s.password }

// LogFile is the server's log.
func (s *Server) LogFile() string { return filepath.Join(s.dir, "postgres.log") }

// Log is the server's log so far, for failure messages.
func (s *Server) Log() string {
	b, _ := os.ReadFile(s.LogFile())
	return string(b)
}

// DSN is a URL for database db over TCP; without the password when
// withPassword is false (for a configuration that reads it from a file).
func (s *Server) DSN(db string, withPassword bool) string {
	u := url.URL{Scheme: "postgres", Host: s.Addr(), Path: "/" + db, RawQuery: "sslmode=disable"}
	if withPassword {
		u.User = url.UserPassword(User, s.password)
	} else {
		u.User = url.User(User)
	}
	return u.String()
}

// CreateDatabase makes a new empty database and returns its DSN, with
// the password.
func (s *Server) CreateDatabase(ctx context.Context) (string, error) {
	name := fmt.Sprintf("t%d_%d", time.Now().UnixNano()%1e6, s.dbs.Add(1))
	conn, err := pgx.Connect(ctx, s.DSN("postgres", true))
	if err != nil {
		return "", err
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", fmt.Errorf("create database %s: %w", name, err)
	}
	return s.DSN(name, true), nil
}

// NewDatabase is CreateDatabase for a test, which fails when it cannot.
func (s *Server) NewDatabase(t testing.TB) string {
	t.Helper()
	dsn, err := s.CreateDatabase(context.Background())
	if err != nil {
		t.Fatalf("%v\n%s", err, tail(s.Log(), 2000))
	}
	return dsn
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}

// Sockets is the folder with the server's unix socket, for psql -h.
func (s *Server) Sockets() string { return s.dir }

// Psql runs psql's SQL as User over the unix socket and returns its
// output (for tests that look at the database the way an administrator
// would).
func (s *Server) Psql(db, sql string) (string, error) {
	psql := filepath.Join(s.bin, "psql")
	if !executable(psql) {
		var err error
		if psql, err = exec.LookPath("psql"); err != nil {
			return "", errors.New("psql not found (apt-get install postgresql-client)")
		}
	}
	cmd := exec.Command(psql, "-h", s.dir, "-p", strconv.Itoa(s.port), "-U", User, "-d", db, "-Atq", "-v", "ON_ERROR_STOP=1", "-c", sql)
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}
