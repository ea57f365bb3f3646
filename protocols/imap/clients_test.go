package imap

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stepgate/stepgate/internal/testenv"
	"github.com/stepgate/stepgate/internal/testenv/dovecot"
)

// TestImaplib: literals, pipelining, CONDSTORE and IDLE from Python's
// imaplib through stepgate.
func TestImaplib(t *testing.T) {
	py := testenv.NeedProgram(t, "python3")
	r := newRig(t, map[string]string{"alice": "classmate"})
	alice := r.AddEnrolled(t, "alice", "x")
	host, port, _ := net.SplitHostPort(r.Addr)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, py, "testdata/imaplib_check.py", host, port, "alice", "classmate"+alice.Code(t))
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	if !sc.Scan() || sc.Text() != "IDLING" {
		cmd.Wait()
		t.Fatalf("imaplib before IDLE: %q\n%s", sc.Text(), stderr.String())
	}
	r.dc.Deliver("alice", dovecot.Message(1, 300))
	fmt.Fprintln(stdin, "delivered")
	if !sc.Scan() || sc.Text() != "ARRIVED" {
		cmd.Wait()
		t.Fatalf("imaplib IDLE: %q\n%s", sc.Text(), stderr.String())
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("imaplib: %v\n%s", err, stderr.String())
	}
}

var xTUID = regexp.MustCompile(`(?m)^X-TUID: \S+\r?\n`)

// mailboxDigest is the set of message contents under a maildir tree,
// independent of file names and flags.
func mailboxDigest(t testing.TB, root string) []string {
	t.Helper()
	var sums []string
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		if dir := filepath.Base(filepath.Dir(p)); dir != "cur" && dir != "new" {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		// mbsync stamps each message it stores with a random X-TUID.
		b = xTUID.ReplaceAll(b, nil)
		sums = append(sums, fmt.Sprintf("%x", sha256.Sum256(b)))
		return nil
	})
	sort.Strings(sums)
	return sums
}

// TestMbsyncEqualsDirect: a 200-message mailbox synced through stepgate
// is byte for byte the mailbox synced straight from Dovecot.
func TestMbsyncEqualsDirect(t *testing.T) {
	mbsync := testenv.NeedProgram(t, "mbsync")
	r := newRig(t, map[string]string{"alice": "classmate"})
	alice := r.AddEnrolled(t, "alice", "x")
	for i := 1; i <= 200; i++ {
		r.dc.Deliver("alice", dovecot.Message(i, 500+i*37))
	}
	secret := "classmate" + alice.Code(t)
	sync := func(name, addr, pass string) string {
		t.Helper()
		dir := t.TempDir()
		local := filepath.Join(dir, "mail") + "/"
		if err := os.MkdirAll(local, 0o700); err != nil {
			t.Fatal(err)
		}
		host, port, _ := net.SplitHostPort(addr)
		rc := fmt.Sprintf(`IMAPAccount acct
Host %s
Port %s
User alice
Pass %s
SSLType None
AuthMechs LOGIN

IMAPStore remote
Account acct

MaildirStore local
Path %s
Inbox %sINBOX

Channel ch
Far :remote:
Near :local:
Patterns INBOX
Create Near
SyncState *
`, host, port, pass, local, local)
		conf := filepath.Join(dir, "mbsyncrc")
		if err := os.WriteFile(conf, []byte(rc), 0o600); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, mbsync, "-c", conf, "-a").CombinedOutput()
		if err != nil {
			t.Fatalf("mbsync %s: %v\n%s", name, err, out)
		}
		return local
	}
	throughDir := sync("through stepgate", r.Addr, secret)
	directDir := sync("direct", r.dc.Addr(), "classmate")
	through, direct := mailboxDigest(t, throughDir), mailboxDigest(t, directDir)
	if len(direct) != 200 {
		t.Fatalf("direct sync has %d messages, want 200", len(direct))
	}
	if strings.Join(through, ",") != strings.Join(direct, ",") {
		t.Fatalf("through stepgate: %d messages differing from the %d synced directly", len(through), len(direct))
	}
}

// TestFetchmailAndOfflineimap: two more real clients, LOGIN (fetchmail)
// and ID before AUTHENTICATE PLAIN (offlineimap3).
func TestFetchmailAndOfflineimap(t *testing.T) {
	r := newRig(t, map[string]string{"alice": "classmate"})
	alice := r.AddEnrolled(t, "alice", "x")
	for i := 1; i <= 3; i++ {
		r.dc.Deliver("alice", dovecot.Message(i, 400))
	}
	secret := "classmate" + alice.Code(t)
	host, port, _ := net.SplitHostPort(r.Addr)

	t.Run("fetchmail", func(t *testing.T) {
		fm := testenv.NeedProgram(t, "fetchmail")
		dir := t.TempDir()
		out := filepath.Join(dir, "mbox")
		rc := filepath.Join(dir, "fetchmailrc")
		conf := fmt.Sprintf("set no syslog\npoll %s service %s protocol IMAP auth password user \"alice\" password \"%s\" keep fetchall sslproto '' mda \"cat >> %s\"\n",
			host, port, secret, out)
		if err := os.WriteFile(rc, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, fm, "-f", rc, "-v", "--nodetach", "--nosyslog")
		cmd.Env = append(os.Environ(), "HOME="+dir, "FETCHMAILHOME="+dir)
		b, err := cmd.CombinedOutput()
		got, _ := os.ReadFile(out)
		if err != nil || strings.Count(string(got), "Subject: message ") != 3 {
			t.Fatalf("fetchmail: %v, %d messages\n%s", err, strings.Count(string(got), "Subject: message "), b)
		}
	})
	t.Run("offlineimap", func(t *testing.T) {
		oi := testenv.NeedProgram(t, "offlineimap")
		dir := t.TempDir()
		conf := filepath.Join(dir, "offlineimaprc")
		rc := fmt.Sprintf(`[general]
accounts = acct
metadata = %[1]s/meta

[Account acct]
localrepository = local
remoterepository = remote

[Repository local]
type = Maildir
localfolders = %[1]s/mail

[Repository remote]
type = IMAP
remotehost = %[2]s
remoteport = %[3]s
remoteuser = alice
remotepass = %[4]s
ssl = no
starttls = no
auth_mechanisms = PLAIN
folderfilter = lambda f: f == 'INBOX'
`, dir, host, port, secret)
		if err := os.WriteFile(conf, []byte(rc), 0o600); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		b, err := exec.CommandContext(ctx, oi, "-c", conf, "-o", "-u", "basic").CombinedOutput()
		if n := len(mailboxDigest(t, filepath.Join(dir, "mail"))); err != nil || n != 3 {
			t.Fatalf("offlineimap: %v, %d messages\n%s", err, n, b)
		}
	})
}
