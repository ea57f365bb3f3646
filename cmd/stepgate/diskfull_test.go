package main_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stepgate/stepgate/internal/testenv"
)

// TestFullDiskDoesNotBurnCode: when the replay record of a first sign-in
// cannot be written (the data folder is full), the bind answers
// unavailable (52) rather than invalid credentials, a retry is not called
// a replay, /readyz says not ready, and once space is freed /readyz turns
// ready by itself and the very same password and code sign in.
func TestFullDiskDoesNotBurnCode(t *testing.T) {
	testenv.NeedPrograms(t, "ldapwhoami", "curl")
	dir := filepath.Join(testenv.Tmpfs(t, 16<<20), "data")
	const pw = "classmate" // enrolledAlice's
	a := serveAlice(t, dir)
	secret, now, ldapAddr, stop := a.secret, a.now, a.ldap, a.stop
	admin := a.admin

	readyz := func() (int, string) {
		t.Helper()
		out, err := exec.Command(testenv.NeedProgram(t, "curl"), "-sS", "--max-time", "10", "-w", "\n%{http_code}", "http://"+admin+"/readyz").Output()
		if err != nil {
			t.Fatalf("curl /readyz: %v", err)
		}
		body, status, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
		var c int
		fmt.Sscan(status, &c)
		return c, body
	}
	if c, body := readyz(); c != 200 {
		t.Fatalf("/readyz before the disk is full = %d %q", c, body)
	}

	// Filled after start-up: the server's database was opened with room,
	// so only the write that records the used code meets the full disk.
	filler := testenv.Fill(t, filepath.Dir(dir))
	dn := "uid=alice,ou=people,dc=example,dc=org"
	// The next step's code: unused (the confirm used this step's) and
	// accepted for at least a minute.
	stored := pw + code(t, secret, now.Add(30*time.Second))
	if rc, out := ldapwhoami(t, ldapAddr, dn, stored); rc != 52 {
		t.Fatalf("ldapwhoami on a full disk: exit %d, want 52 (unavailable): %s", rc, out)
	}
	// The retry meets the same full disk: still unavailable, not a replay.
	if rc, out := ldapwhoami(t, ldapAddr, dn, stored); rc != 52 {
		t.Fatalf("retry on a full disk: exit %d, want 52 (unavailable, not a replayed code): %s", rc, out)
	}
	if c, body := readyz(); c != 503 || !strings.Contains(body, "full") {
		t.Fatalf("/readyz after a failed write = %d %q, want 503 naming the full disk", c, body)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, body := readyz()
		if c == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz 30s after space was freed = %d %q", c, body)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if rc, out := ldapwhoami(t, ldapAddr, dn, stored); rc != 0 || !strings.Contains(out, "dn:"+dn) {
		t.Fatalf("the same password and code once space is back: exit %d: %s", rc, out)
	}

	r := stop()
	// Proof that the write itself failed, not something before it.
	if r.code != 0 || !strings.Contains(r.stderr, `"msg":"recording used code"`) || !strings.Contains(r.stderr, "disk is full") {
		t.Fatalf("serve: exit %d; want the failed replay write (disk is full) in its log:\n%s", r.code, r.stderr)
	}
	if !strings.Contains(r.stderr, "store writes work again") {
		t.Fatalf("serve did not log the store's recovery:\n%s", r.stderr)
	}
}
