package ldap

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stepgate/stepgate/internal/testenv"
	"github.com/stepgate/stepgate/internal/testenv/dovecot"
)

// TestDovecotAuthBindThroughStepgate puts a real application in front:
// Dovecot checks IMAP logins with an LDAP bind (auth_bind) against
// stepgate, so password+code lets a mail client in and a wrong code does
// not, without any change to Dovecot.
func TestDovecotAuthBindThroughStepgate(t *testing.T) {
	curl := testenv.NeedProgram(t, "curl")
	r := newRig(t, nil, nil)
	alice := r.AddEnrolled(t, "alice", "classmate")

	dir := t.TempDir()
	os.Chmod(dir, 0o755) // Dovecot's auth process reads the file
	conf := filepath.Join(dir, "dovecot-ldap.conf.ext")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(`uris = ldap://%s
ldap_version = 3
auth_bind = yes
auth_bind_userdn = uid=%%u,ou=people,%s
base = ou=people,%s
`, r.addr, base, base)), 0o644); err != nil {
		t.Fatal(err)
	}
	dc := dovecot.Start(t, dovecot.Options{PassDB: fmt.Sprintf("passdb {\n  driver = ldap\n  args = %s\n}\n", conf)})
	login := func(secret string) (int, string) {
		t.Helper()
		return run(t, nil, curl, "-sS", "--max-time", "20", "-u", "alice:"+secret, "imap://"+dc.Addr()+"/")
	}
	code := alice.Code(t)
	if rc, out := login("classmate" + wrongCode(code)); rc != 67 {
		t.Fatalf("Dovecot login with a wrong code: curl exit %d, want 67: %s", rc, out)
	}
	if rc, out := login("classmate" + code); rc != 0 || !strings.Contains(out, "INBOX") {
		t.Fatalf("Dovecot login with password+code: curl exit %d: %s\n%s", rc, out, dc.Log())
	}
}
