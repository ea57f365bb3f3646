package main_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"

	"github.com/stepgate/stepgate/internal/testenv"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "stepgate-bin")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "stepgate")
	out, err := exec.Command("go", "build", "-race", "-o", binary, ".").CombinedOutput()
	if err != nil {
		os.Stderr.Write(out)
		panic(err)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type result struct {
	stdout, stderr string
	code           int
}

// run runs the binary with the data folder dir and stdin.
func run(t *testing.T, dir, stdin string, args ...string) result {
	t.Helper()
	return runVia(t, nil, dir, stdin, args...)
}

// runVia is run with the binary started through prefix (setpriv ...), or
// directly when prefix is empty.
func runVia(t *testing.T, prefix []string, dir, stdin string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	argv := append(append(append([]string{}, prefix...), binary, "--data-dir", dir), args...)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), "STEPGATE_SEALING_KEY_FILE=", "STEPGATE_CONFIG=")
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		t.Fatalf("%v: %v", argv, err)
	}
	return r
}

func must(t *testing.T, r result) result {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	return r
}

func code(t *testing.T, secret string, at time.Time) string {
	t.Helper()
	c, err := totp.GenerateCode(secret, at)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestEnrollAndCheck scripts the enrollment flow and the decision through
// the built binary, as an administrator's tooling would.
func TestEnrollAndCheck(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	const pw = "correct horse 42"
	must(t, run(t, dir, pw+"\n", "user", "add", "alice", "--password-stdin", "--email", "alice@example.org"))

	var enrolled struct{ User, Label, Secret, URI string }
	r := must(t, run(t, dir, "", "user", "enroll", "alice", "--json", "--label", "phone", "--qr", filepath.Join(t.TempDir(), "qr.png")))
	if err := json.Unmarshal([]byte(r.stdout), &enrolled); err != nil {
		t.Fatalf("enroll --json: %v\n%s", err, r.stdout)
	}
	if enrolled.User != "alice" || enrolled.Label != "phone" || len(enrolled.Secret) < 16 ||
		!strings.HasPrefix(enrolled.URI, "otpauth://totp/stepgate:alice?") || !strings.Contains(enrolled.URI, "secret="+enrolled.Secret) {
		t.Fatalf("enroll --json = %+v", enrolled)
	}

	// Pending: two-step is not on yet, so a sign-in with a code is refused.
	now := time.Now()
	if r := run(t, dir, pw+code(t, enrolled.Secret, now), "check", "alice"); r.code != 1 || r.stdout != "deny\n" {
		t.Fatalf("check before confirm: %+v", r)
	}
	if r := run(t, dir, "", "user", "confirm", "alice", "000000"); r.code != 1 || !strings.Contains(r.stderr, "does not match") {
		t.Fatalf("confirm with a wrong code: %+v", r)
	}
	must(t, run(t, dir, "", "user", "confirm", "alice", code(t, enrolled.Secret, now)))

	var users []map[string]any
	if err := json.Unmarshal([]byte(must(t, run(t, dir, "", "user", "list", "--json")).stdout), &users); err != nil {
		t.Fatal(err)
	}
	if len(users) != 1 || users[0]["two_step"] != "active" || users[0]["authenticators"] != 1.0 {
		t.Fatalf("user list --json = %v", users)
	}

	// The confirming code's step is used; the next step's code is fresh.
	next := code(t, enrolled.Secret, now.Add(30*time.Second))
	if r := run(t, dir, pw+next+"\n", "check", "alice"); r.code != 0 || r.stdout != "allow\n" {
		t.Fatalf("check allow: %+v", r)
	}
	// The same string in a new process: its session is in the store.
	if r := run(t, dir, pw+next, "check", "--verbose", "alice"); r.code != 0 || !strings.HasPrefix(r.stderr, "allow: session\n") {
		t.Fatalf("the same string in a new process: %+v, want a session hit", r)
	}
	// Another string with the used code: a replay.
	replay := run(t, dir, "x"+pw+next, "check", "alice")
	wrongCode := run(t, dir, pw+"000000", "check", "alice")
	wrongPassword := run(t, dir, "Correct horse 42"+code(t, enrolled.Secret, now.Add(30*time.Second)), "check", "alice")
	unknown := run(t, dir, pw+next, "check", "mallory")
	for name, r := range map[string]result{"replay": replay, "wrong code": wrongCode, "wrong password": wrongPassword, "unknown user": unknown} {
		if r.code != 1 || r.stdout != "deny\n" || r.stderr != "deny: invalid credentials\n" {
			t.Errorf("%s: %+v, want deny with the generic reason", name, r)
		}
	}
	if r := run(t, dir, "x"+pw+next, "check", "--verbose", "alice"); !strings.Contains(r.stderr, "replayed_code") {
		t.Errorf("check --verbose does not give the internal reason: %q", r.stderr)
	}

	// No file in the data folder holds the password or the secret in clear.
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		for _, s := range []string{pw, enrolled.Secret, next} {
			if bytes.Contains(b, []byte(s)) {
				t.Errorf("%s contains %q in clear", e.Name(), s)
			}
		}
		if fi, _ := e.Info(); fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s has mode %04o", e.Name(), fi.Mode().Perm())
		}
	}

	must(t, run(t, dir, "", "user", "disable-2sv", "alice", "--yes"))
	if r := run(t, dir, pw+code(t, enrolled.Secret, now.Add(60*time.Second)), "check", "alice"); r.code != 1 {
		t.Fatalf("check after disable-2sv: %+v", r)
	}
	must(t, run(t, dir, "", "user", "delete", "alice", "--yes"))
	if r := must(t, run(t, dir, "", "user", "list", "--json")); strings.TrimSpace(r.stdout) != "[]" {
		t.Fatalf("user list after delete: %q", r.stdout)
	}
}

func TestUsageErrorsExit2(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	for _, args := range [][]string{
		{},
		{"bogus"},
		{"user"},
		{"user", "bogus"},
		{"user", "add"},
		{"user", "add", "alice"}, // no --password-stdin
		{"user", "add", "al ice", "--password-stdin"},
		{"user", "add", "alice​", "--password-stdin"}, // invisible: the name profile refuses it
		{"user", "add", "alice@example.org", "--password-stdin"},
		{"user", "add", "alice", "--password-stdin", "--phone", "12345"},
		{"user", "enroll", "alice", "--nope"},
		{"user", "confirm", "alice"},
		{"user", "delete", "alice"}, // no --yes
		{"user", "disable-2sv", "alice"},
		{"user", "disable"},
		{"user", "disable", "alice", "bob"},
		{"user", "enable"},
		{"user", "enable", "alice", "--yes"},
		{"check"},
		{"session", "revoke"},
		{"session", "revoke", "--user", "alice", "abcd"},
		{"serve", "--imap-upstream", "nocolon"},
		{"version", "extra"},
	} {
		r := run(t, dir, "pw\n", args...)
		if r.code != 2 || !strings.Contains(r.stderr, "Usage:") {
			t.Errorf("stepgate %v: exit %d, stderr %q; want 2 with usage", args, r.code, r.stderr)
		}
	}
}

// TestUserAddCanonicalName: an account is stored under its canonical
// name, and every other form of it names the same account.
func TestUserAddCanonicalName(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	if r := run(t, dir, "pw\n", "user", "add", "ＡＬＩＣＥ", "--password-stdin"); r.code != 0 || !strings.Contains(r.stdout, "added user alice") {
		t.Fatalf("user add ＡＬＩＣＥ: %+v", r)
	}
	if r := run(t, dir, "pw\n", "user", "add", "Alice", "--password-stdin"); r.code == 0 {
		t.Fatalf("a second form of alice was added as another account: %+v", r)
	}
	if r := run(t, dir, "", "user", "list"); r.code != 0 || strings.Count(r.stdout, "alice") != 1 || strings.Contains(r.stdout, "Alice") {
		t.Fatalf("user list: %+v", r)
	}
	if r := run(t, dir, "", "user", "disable", "ALICE"); r.code != 0 {
		t.Fatalf("user disable ALICE: %+v", r)
	}
}

func TestBadConfigStopsStartup(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	cfg := filepath.Join(t.TempDir(), "stepgate.yaml")
	os.WriteFile(cfg, []byte("ldap:\n  listen: 127.0.0.1:0\nsessions:\n  idle: soon\n"), 0o600)
	r := run(t, dir, "", "--config", cfg, "serve")
	if r.code != 1 || !strings.Contains(r.stderr, cfg+":4: sessions.idle: \"soon\" is not a duration") {
		t.Fatalf("bad config: %+v", r)
	}
}

func TestSessionCommandsNeedServer(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	r := run(t, dir, "", "session", "list")
	if r.code != 1 || !strings.Contains(r.stderr, "not running") {
		t.Fatalf("session list without a server: %+v", r)
	}
}

// serve starts `stepgate serve` and returns the admin address and a stop
// function that sends SIGTERM and waits for a clean exit.
func serve(t *testing.T, dir string, args ...string) (adminAddr string, stop func() result) {
	t.Helper()
	addr, stop, _ := serveWithOutput(t, dir, args...)
	return addr, stop
}

// serveWithOutput is serve, and also returns what serve printed so far.
func serveWithOutput(t *testing.T, dir string, args ...string) (adminAddr string, stop func() result, stdout func() string) {
	t.Helper()
	cmd := exec.Command(binary, append([]string{"--data-dir", dir, "serve", "--admin-listen", "127.0.0.1:0", "--portal-listen", "127.0.0.1:0"}, args...)...)
	cmd.Env = append(os.Environ(), "STEPGATE_SEALING_KEY_FILE=", "STEPGATE_CONFIG=")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	var out testenv.Buffer
	cmd.Stdout = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		re := regexp.MustCompile(`"service":"admin","addr":"([^"]+)"`)
		for sc.Scan() {
			logs.WriteString(sc.Text() + "\n")
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				found <- m[1]
			}
		}
		close(found)
	}()
	stopped := false
	stop = func() result {
		if stopped {
			return result{}
		}
		stopped = true
		cmd.Process.Signal(os.Interrupt)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			code := 0
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			}
			return result{stdout: out.String(), stderr: logs.String(), code: code}
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			t.Fatal("serve did not stop within 20s of SIGINT")
			return result{}
		}
	}
	t.Cleanup(func() { stop() })
	select {
	case addr, ok := <-found:
		if !ok {
			t.Fatalf("serve exited before listening:\n%s", stop().stderr)
		}
		return addr, stop, out.String
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not start within 30s")
	}
	return "", stop, out.String
}

func TestServeAdminAndControl(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	must(t, run(t, dir, "pw\n", "user", "add", "alice", "--password-stdin"))
	addr, stop := serve(t, dir, "--ldap-listen", "off", "--imap-listen", "off")

	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/healthz"); code != 200 || body != "ok\n" {
		t.Fatalf("/healthz = %d %q", code, body)
	}
	if code, _ := get("/readyz"); code != 200 {
		t.Fatalf("/readyz = %d", code)
	}
	if code, body := get("/metrics"); code != 200 || !strings.Contains(body, "stepgate_sessions_live 0") {
		t.Fatalf("/metrics = %d\n%s", code, body)
	}

	// A second server on the same data folder is refused.
	if r := run(t, dir, "", "serve", "--admin-listen", "off", "--portal-listen", "off", "--ldap-listen", "off", "--imap-listen", "off"); r.code != 1 ||
		!strings.Contains(r.stderr, "another stepgate serve is running") {
		t.Fatalf("second serve: %+v", r)
	}
	if r := must(t, run(t, dir, "", "session", "list", "--json")); strings.TrimSpace(r.stdout) != "[]" {
		t.Fatalf("session list = %q", r.stdout)
	}
	if r := must(t, run(t, dir, "", "session", "revoke", "--user", "alice")); r.stdout != "revoked 0 session(s)\n" {
		t.Fatalf("session revoke = %q", r.stdout)
	}
	if r := run(t, dir, "", "session", "revoke", "0123456789abcdef"); r.code != 1 || !strings.Contains(r.stderr, "no session") {
		t.Fatalf("revoke of an unknown id: %+v", r)
	}
	r := stop()
	if r.code != 0 || !strings.Contains(r.stderr, "shutting down") {
		t.Fatalf("serve after SIGINT: exit %d\n%s", r.code, r.stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "control.sock")); !os.IsNotExist(err) {
		t.Fatalf("control socket left behind: %v", err)
	}
}

// ldapwhoami runs OpenLDAP's ldapwhoami and returns its exit code and output.
func ldapwhoami(t *testing.T, addr, dn, secret string) (int, string) {
	t.Helper()
	path := testenv.NeedProgram(t, "ldapwhoami")
	cmd := exec.Command(path, "-x", "-H", "ldap://"+addr, "-D", dn, "-w", secret)
	cmd.Env = append(os.Environ(), "LDAPCONF=/dev/null", "LDAPRC=/dev/null")
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), string(out)
	} else if err != nil {
		t.Fatal(err)
	}
	return 0, string(out)
}

// aliceServed is enrolledAlice with `stepgate serve` running on her data
// folder, LDAP on (IMAP off).
type aliceServed struct {
	secret      string    // her authenticator's secret
	now         time.Time // a time in the current step, which is unused
	ldap, admin string    // the server's addresses
	stop        func() result
}

func serveAlice(t *testing.T, dir string) aliceServed {
	t.Helper()
	a := aliceServed{secret: enrolledAlice(t, dir), now: time.Now()}
	a.ldap = fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	a.admin, a.stop = serve(t, dir, "--ldap-listen", a.ldap, "--imap-listen", "off")
	return a
}

// TestLDAPSessionAcrossRestartAndRevoke: a device's stored string works
// through `stepgate serve`'s LDAP front end, keeps working after a restart
// (the session is restored), and stops when the session is revoked.
func TestLDAPSessionAcrossRestartAndRevoke(t *testing.T) {
	testenv.NeedProgram(t, "ldapwhoami")
	dir := filepath.Join(t.TempDir(), "data")
	const pw = "classmate" // enrolledAlice's
	a := serveAlice(t, dir)
	secret, now, ldapAddr, stop := a.secret, a.now, a.ldap, a.stop

	dn := "uid=alice,ou=people,dc=example,dc=org"
	stored := pw + code(t, secret, now.Add(30*time.Second))
	if rc, out := ldapwhoami(t, ldapAddr, dn, stored); rc != 0 || !strings.Contains(out, "dn:"+dn) {
		t.Fatalf("ldapwhoami with password+code: exit %d: %s", rc, out)
	}
	if rc, _ := ldapwhoami(t, ldapAddr, dn, pw+"000000"); rc != 49 {
		t.Fatalf("ldapwhoami with a wrong code: exit %d, want 49", rc)
	}
	if r := must(t, run(t, dir, "", "session", "list", "--user", "alice")); !strings.Contains(r.stdout, "ldap") {
		t.Fatalf("session list after the bind:\n%s", r.stdout)
	}
	if r := stop(); r.code != 0 {
		t.Fatalf("serve: exit %d\n%s", r.code, r.stderr)
	}

	_, stop = serve(t, dir, "--ldap-listen", ldapAddr, "--imap-listen", "off")
	if rc, out := ldapwhoami(t, ldapAddr, "alice", stored); rc != 0 {
		t.Fatalf("the stored string after a restart: exit %d: %s", rc, out)
	}
	if r := must(t, run(t, dir, "", "session", "revoke", "--user", "alice")); !strings.Contains(r.stdout, "revoked 1 session") {
		t.Fatalf("session revoke --user: %q", r.stdout)
	}
	if rc, _ := ldapwhoami(t, ldapAddr, "alice", stored); rc != 49 {
		t.Fatalf("the stored string after revoke: exit %d, want 49", rc)
	}
	stop()
}

// TestDemoPrintsWorkingCommands runs what `make run` runs, then the
// ldapwhoami and curl lines it prints, with the demo account's code.
func TestDemoPrintsWorkingCommands(t *testing.T) {
	testenv.NeedPrograms(t, "ldapwhoami", "curl")
	dir := filepath.Join(t.TempDir(), "data")
	ldapAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	imapAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	_, stop, stdout := serveWithOutput(t, dir, "--demo", "--ldap-listen", ldapAddr, "--imap-listen", imapAddr, "--imap-upstream", "demo")
	defer stop()
	var banner string
	for i := 0; i < 200 && !strings.Contains(banner, "The same string keeps working"); i++ {
		time.Sleep(50 * time.Millisecond)
		banner = stdout()
	}
	ldapLine := regexp.MustCompile(`ldapwhoami -x -H ldap://(\S+) -D (\S+) -w '([^']*)CODE'`).FindStringSubmatch(banner)
	curlLine := regexp.MustCompile(`curl -u '([^:]+):([^']*)CODE' '(imap://[^']+)'`).FindStringSubmatch(banner)
	checkLine := regexp.MustCompile(`(?m)^  (printf .*)CODE(' \| .* check demo)$`).FindStringSubmatch(banner)
	key := regexp.MustCompile(`type the key ([A-Z2-7 ]+)\)`).FindStringSubmatch(banner)
	if ldapLine == nil || curlLine == nil || checkLine == nil || key == nil {
		t.Fatalf("no ldapwhoami line, curl line, check line or key in the banner:\n%s", banner)
	}
	if ldapLine[1] != ldapAddr || !strings.Contains(curlLine[3], imapAddr) {
		t.Fatalf("banner names %s and %s; serve listens on %s and %s", ldapLine[1], curlLine[3], ldapAddr, imapAddr)
	}
	secret := strings.ReplaceAll(key[1], " ", "")
	now := code(t, secret, time.Now())
	stored := ldapLine[3] + now
	// The check line, run by a shell as printed: it names this binary
	// and the data folder, and asks the server, so the session it opens
	// lets the same string in over LDAP and IMAP below.
	sh := exec.Command("/bin/sh", "-c", checkLine[1]+now+checkLine[2])
	if out, err := sh.CombinedOutput(); err != nil || !strings.HasPrefix(string(out), "allow\n") {
		t.Fatalf("the banner's check line %q: %v\n%s", checkLine[0], err, out)
	}
	if rc, out := ldapwhoami(t, ldapAddr, ldapLine[2], stored); rc != 0 {
		t.Fatalf("the banner's ldapwhoami after its check line: exit %d: %s", rc, out)
	}
	// The same string again, now over IMAP: the check opened a session
	// for it, so the used code does not matter.
	curl := exec.Command(testenv.NeedProgram(t, "curl"), "-sS", "--max-time", "20", "-u", curlLine[1]+":"+stored, curlLine[3])
	out, err := curl.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "* 1 FETCH") && !strings.Contains(string(out), "Welcome") && !strings.Contains(string(out), "SEARCH 1") {
		t.Fatalf("the banner's curl: %v\n%s", err, out)
	}
}
