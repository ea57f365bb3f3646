package main_test

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	ber "github.com/go-asn1-ber/asn1-ber"
	goldap "github.com/go-ldap/ldap/v3"

	"github.com/stepgate/stepgate/internal/testenv"
)

// The memory tests measure the process as it runs in production: a
// binary built without the race detector, whose shadow memory would
// swamp the figures.
var (
	plainOnce   sync.Once
	plainBinary string
	plainErr    error
)

func plainStepgate(t *testing.T) string {
	t.Helper()
	plainOnce.Do(func() {
		dir, err := os.MkdirTemp("", "stepgate-plain")
		if err != nil {
			plainErr = err
			return
		}
		plainBinary = filepath.Join(dir, "stepgate")
		if out, err := exec.Command("go", "build", "-o", plainBinary, ".").CombinedOutput(); err != nil {
			plainErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if plainErr != nil {
		t.Fatal(plainErr)
	}
	return plainBinary
}

// limitsServer is a `stepgate serve` child process.
type limitsServer struct {
	cmd  *exec.Cmd
	ldap string
	imap string
	logs *testenv.Buffer
}

// startLimits starts the plain binary on dir with config yaml (which
// the listen addresses come as flags) and waits until LDAP accepts connections.
func startLimits(t *testing.T, dir, yaml string, imapDemo bool) *limitsServer {
	t.Helper()
	s := &limitsServer{ldap: fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)), logs: &testenv.Buffer{}}
	audit := "audit:\n  file: " + filepath.Join(t.TempDir(), "audit.log") + "\n"
	args := []string{"--data-dir", dir, "--config", filepath.Join(t.TempDir(), "stepgate.yaml"), "serve",
		"--ldap-listen", s.ldap, "--admin-listen", "off", "--portal-listen", "off"}
	if imapDemo {
		s.imap = fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
		args = append(args, "--imap-listen", s.imap, "--imap-upstream", "demo")
	} else {
		args = append(args, "--imap-listen", "off")
	}
	if err := os.WriteFile(args[3], []byte(audit+yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	s.cmd = exec.Command(plainStepgate(t), args...)
	s.cmd.Env = append(os.Environ(), "STEPGATE_SEALING_KEY_FILE=", "STEPGATE_CONFIG=")
	s.cmd.Stdout, s.cmd.Stderr = s.logs, s.logs
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { s.cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		s.cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			s.cmd.Process.Kill()
			<-exited
		}
	})
	for i := 0; i < 600; i++ {
		select {
		case <-exited:
			t.Fatalf("serve exited at start-up:\n%s", s.logs.String())
		default:
		}
		if c, err := net.DialTimeout("tcp", s.ldap, time.Second); err == nil {
			c.Close()
			return s
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("serve did not listen on %s within 30s:\n%s", s.ldap, s.logs.String())
	return nil
}

// rssKiB is the process's resident memory (VmRSS of /proc/PID/status).
func (s *limitsServer) rssKiB(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.cmd.Process.Pid))
	if err != nil {
		t.Fatalf("stepgate is gone: %v\n%s", err, s.logs.String())
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			if err != nil {
				t.Fatalf("VmRSS line %q: %v", line, err)
			}
			return n
		}
	}
	t.Fatal("no VmRSS in /proc/PID/status")
	return 0
}

// settledRSS waits (30 s at most) until the runtime has handed back what
// start-up and the first sign-in freed, and returns the RSS then.
func (s *limitsServer) settledRSS(t *testing.T) int {
	t.Helper()
	prev := s.rssKiB(t)
	for i := 0; i < 30; i++ {
		time.Sleep(time.Second)
		v := s.rssKiB(t)
		if v > prev-512 {
			return min(v, prev)
		}
		prev = v
	}
	return prev
}

// rssRange samples the RSS for d and returns the lowest and the highest
// reading: a baseline is the lowest (the runtime hands freed memory,
// such as a finished password hash, back to the system gradually), a
// load's figure the highest.
func (s *limitsServer) rssRange(t *testing.T, d time.Duration) (low, high int) {
	t.Helper()
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		v := s.rssKiB(t)
		if low == 0 || v < low {
			low = v
		}
		high = max(high, v)
	}
	return low, high
}

func (s *limitsServer) alive(t *testing.T) {
	t.Helper()
	if err := s.cmd.Process.Signal(syscall.Signal(0)); err != nil || s.cmd.ProcessState != nil {
		t.Fatalf("stepgate died: %v\n%s", err, s.logs.String())
	}
}

// enrolledAlice adds alice (password classmate) with an authenticator
// and returns its secret.
func enrolledAlice(t *testing.T, dir string) string {
	t.Helper()
	secret, _ := enrollConfirmedEarly(t, dir, "alice", "classmate")
	return secret
}

const aliceDN = "uid=alice,ou=people,dc=example,dc=org"

func dialFrom(t *testing.T, from, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 10 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial from %s: %v", from, err)
	}
	return c
}

func closeAll(cs []net.Conn) {
	for _, c := range cs {
		c.Close()
	}
}

// TestBadInputMemoryCeiling: thousands of connections that announce large
// LDAP messages and send 7 bytes leave the process's memory nearly where
// it was, the process lives, and an enrolled user signs in throughout.
func TestBadInputMemoryCeiling(t *testing.T) {
	testenv.NeedProgram(t, "ldapwhoami")
	dir := filepath.Join(t.TempDir(), "data")
	secret := enrolledAlice(t, dir)
	s := startLimits(t, dir, `
ldap:
  read_timeout: 60s   # the announced messages stay pending while RSS is read
  max_conns: 10000
limits:
  address_exceptions:
    - {addresses: [127.0.0.0/8], max_conns_per_address: 10000}
`, false)
	stored := "classmate" + code(t, secret, time.Now())
	if rc, out := ldapwhoami(t, s.ldap, aliceDN, stored); rc != 0 {
		t.Fatalf("sign-in before: exit %d: %s\n%s", rc, out, s.logs.String())
	}
	before := s.settledRSS(t)

	// 2,000 connections each announcing 1 MiB (over the pre-bind cap),
	// then twice 2,000 announcing just under 64 KiB (under it, so they
	// stay pending): the second batch gives the cost of one connection.
	var conns []net.Conn
	defer func() { closeAll(conns) }()
	var highs []int
	for i, head := range [][]byte{
		{0x30, 0x84, 0x00, 0x10, 0x00, 0x00, 0x02}, // 1 MiB
		{0x30, 0x83, 0x00, 0xff, 0x00, 0x02, 0x01}, // 65,280 bytes
		{0x30, 0x83, 0x00, 0xff, 0x00, 0x02, 0x01},
	} {
		for j := 0; j < 2000; j++ {
			c := dialFrom(t, "127.0.0.1", s.ldap)
			conns = append(conns, c)
			if _, err := c.Write(head); err != nil {
				t.Fatalf("flood %d, connection %d: %v", i, j, err)
			}
		}
		// A good client signs in while the flood is on.
		if rc, out := ldapwhoami(t, s.ldap, aliceDN, stored); rc != 0 {
			t.Fatalf("sign-in during flood %d: exit %d: %s", i, rc, out)
		}
		_, high := s.rssRange(t, 2*time.Second)
		highs = append(highs, high)
	}
	during := slices.Max(highs)
	grew := during - before
	t.Logf("RSS (KiB) before %d; after 2,000 x 1 MiB announced %d, + 2,000 pending %d, + 2,000 more pending %d: %.1f KiB per pending connection",
		before, highs[0], highs[1], highs[2], float64(highs[2]-highs[1])/2000)
	if grew > 100<<10 {
		t.Errorf("RSS grew by %d KiB (from %d to %d KiB), over 100 MiB", grew, before, during)
	}
	s.alive(t)
	fresh := "classmate" + code(t, secret, time.Now().Add(30*time.Second))
	if rc, out := ldapwhoami(t, s.ldap, aliceDN, fresh); rc != 0 {
		t.Fatalf("fresh sign-in after the flood: exit %d: %s", rc, out)
	}
	if !strings.Contains(s.logs.String(), "announced, at most 65536 accepted") {
		t.Error("no log line for the messages over the pre-bind cap")
	}
}

// ldapNotice returns the result code of the notice of disconnection the
// server sent on c before until, -1 when it sent nothing, -2 for
// something else.
func ldapNotice(c net.Conn, until time.Time) int {
	c.SetReadDeadline(until)
	p, err := ber.ReadPacket(c)
	if err != nil {
		return -1
	}
	if len(p.Children) < 2 || len(p.Children[1].Children) < 1 {
		return -2
	}
	code, ok := p.Children[1].Children[0].Value.(int64)
	if !ok {
		return -2
	}
	return int(code)
}

// TestPerAddressCap: one address holding idle connections past its cap
// is refused (busy) beyond it, while the front end's global cap is not
// reached: a client from another address signs in fresh, and a session
// holder signs in with its stored string.
func TestPerAddressCap(t *testing.T) {
	testenv.NeedProgram(t, "ldapwhoami")
	dir := filepath.Join(t.TempDir(), "data")
	secret := enrolledAlice(t, dir)
	s := startLimits(t, dir, `
ldap:
  max_conns: 40
limits:
  max_conns_per_address: 8
`, false)
	stored := "classmate" + code(t, secret, time.Now())
	if rc, out := ldapwhoami(t, s.ldap, aliceDN, stored); rc != 0 {
		t.Fatalf("sign-in before: exit %d: %s", rc, out)
	}
	// 50 idle connections from 127.0.0.2, more than the global cap.
	var conns []net.Conn
	defer func() { closeAll(conns) }()
	for i := 0; i < 50; i++ {
		conns = append(conns, dialFrom(t, "127.0.0.2", s.ldap))
	}
	// Read all at once: a read past its deadline does not return what
	// had already arrived.
	until := time.Now().Add(3 * time.Second)
	notices := make(chan int, len(conns))
	for _, c := range conns {
		go func() { notices <- ldapNotice(c, until) }()
	}
	refused, idle := 0, 0
	for range conns {
		switch <-notices {
		case 51:
			refused++
		case -1:
			idle++
		}
	}
	if refused != 42 || idle != 8 {
		t.Fatalf("from one address: %d refused busy, %d held; want 42 and 8 (max_conns_per_address 8)\n%s", refused, idle, s.logs.String())
	}
	// 127.0.0.1 is another address: the session holder, and a fresh sign-in.
	if rc, out := ldapwhoami(t, s.ldap, aliceDN, stored); rc != 0 {
		t.Fatalf("session holder during the flood: exit %d: %s", rc, out)
	}
	if rc, out := ldapwhoami(t, s.ldap, aliceDN, "classmate"+code(t, secret, time.Now().Add(30*time.Second))); rc != 0 {
		t.Fatalf("fresh sign-in during the flood: exit %d: %s", rc, out)
	}
	if !strings.Contains(s.logs.String(), "too many connections from this address") {
		t.Error("no log line for the refusals")
	}
}

// TestHashBound: many concurrent sign-ins that each need a password hash
// (unknown users are checked against a decoy hash) run at most
// limits.password_hashes at once; the excess waits limits.hash_wait and
// gets LDAP busy (51) or IMAP NO [UNAVAILABLE], and the process's memory
// stays bounded.
func TestHashBound(t *testing.T) {
	testenv.NeedProgram(t, "ldapwhoami")
	dir := filepath.Join(t.TempDir(), "data")
	secret := enrolledAlice(t, dir)
	s := startLimits(t, dir, `
lockout:
  max_failures: 100000   # the flood is of wrong passwords; this test is not about lockout
limits:
  password_hashes: 2
  hash_wait: 300ms
  max_conns_per_address: 1000
`, true)
	if rc, out := ldapwhoami(t, s.ldap, aliceDN, "classmate"+code(t, secret, time.Now())); rc != 0 {
		t.Fatalf("sign-in before: exit %d: %s", rc, out)
	}
	before, _ := s.rssRange(t, 2*time.Second)

	// Wrong passwords with a fresh code: each needs a password hash (a
	// wrong code, an unknown user or a locked-out one needs none).
	fresh := code(t, secret, time.Now().Add(30*time.Second))
	const ldapBinds, imapLogins = 64, 32
	var wg sync.WaitGroup
	ldapCodes := make(chan int, ldapBinds)
	imapLines := make(chan string, imapLogins)
	start := make(chan struct{})
	for i := 0; i < ldapBinds; i++ {
		c, err := goldap.DialURL("ldap://" + s.ldap)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			err := c.Bind(aliceDN, fmt.Sprintf("guess%d", i)+fresh)
			var le *goldap.Error
			switch {
			case err == nil:
				ldapCodes <- 0
			case errors.As(err, &le):
				ldapCodes <- int(le.ResultCode)
			default:
				ldapCodes <- -1
			}
		}()
	}
	for i := 0; i < imapLogins; i++ {
		c, err := net.Dial("tcp", s.imap)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		br := bufio.NewReader(c)
		c.SetDeadline(time.Now().Add(60 * time.Second))
		if _, err := br.ReadString('\n'); err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			fmt.Fprintf(c, "a LOGIN alice guess%d%s\r\n", i, fresh)
			line, _ := br.ReadString('\n')
			imapLines <- strings.TrimSpace(line)
		}()
	}
	peak := make(chan int, 1)
	go func() { _, high := s.rssRange(t, 4*time.Second); peak <- high }()
	close(start)
	wg.Wait()
	during := <-peak
	close(ldapCodes)
	close(imapLines)

	counts := map[int]int{}
	for c := range ldapCodes {
		counts[c]++
	}
	if counts[51] == 0 || counts[49]+counts[51] != ldapBinds {
		t.Errorf("LDAP results %v: want only 49 (invalidCredentials) and 51 (busy), some of each", counts)
	}
	unavailable, failed := 0, 0
	for l := range imapLines {
		switch {
		case strings.HasPrefix(l, "a NO [UNAVAILABLE]"):
			unavailable++
		case strings.HasPrefix(l, "a NO [AUTHENTICATIONFAILED]"):
			failed++
		default:
			t.Errorf("IMAP LOGIN answer %q", l)
		}
	}
	// The demo mailbox checks IMAP passwords itself, so no IMAP login
	// hashes here: they may only fail, or be turned away while busy. What
	// they must not do is add hashes beyond the bound (the RSS below).
	grew := during - before
	t.Logf("RSS before %d KiB, peak during %d concurrent hashing sign-ins %d KiB: +%d KiB; LDAP %v, IMAP %d unavailable, %d failed",
		before, ldapBinds+imapLogins, during, grew, counts, unavailable, failed)
	if grew > 150<<10 {
		t.Errorf("RSS grew by %d KiB (from %d to %d KiB) with 2 hashes at once", grew, before, during)
	}
	s.alive(t)
	// The busy answers counted no failure and the slots are free again.
	if rc, out := ldapwhoami(t, s.ldap, aliceDN, "classmate"+code(t, secret, time.Now().Add(30*time.Second))); rc != 0 {
		t.Fatalf("sign-in after: exit %d: %s", rc, out)
	}
}
