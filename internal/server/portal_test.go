package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/pquerna/otp/totp"

	"github.com/stepgate/stepgate/internal/config"
	"github.com/stepgate/stepgate/internal/datadir"
	"github.com/stepgate/stepgate/internal/password"
	"github.com/stepgate/stepgate/internal/store"
	"github.com/stepgate/stepgate/internal/testenv"
	"github.com/stepgate/stepgate/internal/testenv/chromium"
	"github.com/stepgate/stepgate/internal/testenv/dovecot"
)

// browser drives one tab, failing the test on the first error and
// writing a screenshot of each page it names.
type browser struct {
	t    *testing.T
	ctx  context.Context
	base string
	dir  string
	n    int
}

func (b *browser) do(steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.t.Fatalf("browser: %v (page: %s)", err, b.location())
	}
}

func (b *browser) text(sel string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		// A page still loading loses the node it was asked about: ask
		// the new page once more.
		time.Sleep(200 * time.Millisecond)
		s, err = chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	}
	if err != nil {
		b.t.Fatalf("browser: text of %s: %v (page: %s)", sel, err, b.location())
	}
	return s
}

func (b *browser) count(sel string) int {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	n, err := chromedp.Run(ctx, chromedp.Evaluate[int](fmt.Sprintf("document.querySelectorAll(%q).length", sel)))
	if err != nil {
		b.t.Fatalf("browser: counting %s: %v", sel, err)
	}
	return n
}

func (b *browser) location() string {
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	l, _ := chromedp.Run(ctx, chromedp.Location())
	return l
}

// open loads path and waits for its heading.
func (b *browser) open(path string) {
	b.t.Helper()
	b.do(chromedp.Navigate(b.base+path), chromedp.WaitVisible(chromedp.CSS("h1")))
}

// shot writes a full-page screenshot named name, at the window's width
// and, with narrow, at 320 px too.
func (b *browser) shot(name string, narrow bool) {
	b.t.Helper()
	b.n++
	write := func(suffix string) {
		ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
		defer cancel()
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			b.t.Fatalf("screenshot %s: %v", name, err)
		}
		if err := os.WriteFile(filepath.Join(b.dir, fmt.Sprintf("%02d-%s%s.png", b.n, name, suffix)), png, 0o644); err != nil {
			b.t.Fatal(err)
		}
	}
	write("")
	if narrow {
		b.do(chromedp.EmulateViewport(320, 640))
		// Nothing may be wider than the screen: a page that scrolls
		// sideways at 320 px is not readable there.
		ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
		wide, err := chromedp.Run(ctx, chromedp.Evaluate[bool]("document.documentElement.scrollWidth > 320"))
		cancel()
		write("-320px")
		if err != nil || wide {
			b.t.Errorf("%s: wider than 320 px (%v)", name, err)
		}
		b.do(chromedp.EmulateViewport(1100, 800))
	}
}

// TestPortalInABrowser: a person with no two-step yet signs in to the
// portal in a real Chromium, reads the key from the page, confirms with a
// code, gets recovery codes; signs in over LDAP with password and code
// (ldapwhoami), sees that device in Devices, signs it out, and the same
// stored string no longer binds; makes an app password for IMAP only,
// which logs in over IMAP (curl, Dovecot behind a master user) and is
// refused over LDAP. A form posted without its token is refused (curl).
// The portal spends the same failure budget as LDAP and IMAP. The audit
// log has one event for the portal sign-in and one per change.
func TestPortalInABrowser(t *testing.T) {
	ldapwhoami := testenv.NeedProgram(t, "ldapwhoami")
	curl := testenv.NeedProgram(t, "curl")
	dc := dovecot.Start(t, dovecot.Options{Users: map[string]string{"alice": "mail-only", "bob": "mail-only"},
		MasterUser: "stepgate", MasterPassword: "master-secret", NoFailureDelay: true})
	ctx := context.Background()

	t.Setenv(datadir.KeyFileEnv, "")
	dir := datadir.New(filepath.Join(t.TempDir(), "data"))
	st, err := dir.Open(ctx)
	if err != nil {
		t.Fatal(err)
	}
	h, _ := password.Hash("classmate")
	if _, err := st.AddUser(ctx, store.NewUser{Name: "alice", DisplayName: "Alice Liddell", PasswordHash: h}); err != nil {
		t.Fatal(err)
	}
	hb, _ := password.Hash("bobsecret")
	if _, err := st.AddUser(ctx, store.NewUser{Name: "bob", PasswordHash: hb}); err != nil {
		t.Fatal(err)
	}
	bobKey, _ := totp.Generate(totp.GenerateOpts{Issuer: "stepgate", AccountName: "bob"})
	a, err := st.AddAuthenticator(ctx, "bob", "phone", bobKey.Secret())
	if err != nil {
		t.Fatal(err)
	}
	if err := st.ConfirmAuthenticator(ctx, a.ID, 0); err != nil {
		t.Fatal(err)
	}
	st.Close()

	masterFile := filepath.Join(t.TempDir(), "master")
	os.WriteFile(masterFile, []byte("master-secret\n"), 0o600)
	auditFile := filepath.Join(t.TempDir(), "audit.log")
	host, port, _ := net.SplitHostPort(dc.Addr())
	p, _ := strconv.Atoi(port)
	core, addrs, _ := startWith(t, dir, false, nil, func(c *config.Config) {
		c.LDAP.Listen, c.IMAP.Listen = "127.0.0.1:0", "127.0.0.1:0"
		c.IMAP.Upstream = &config.IMAPUpstream{Host: host, Port: p, MasterUser: "stepgate", MasterPasswordFile: masterFile}
		c.Audit.File = auditFile
		// Every attempt here comes from 127.0.0.1: with the address's
		// budget out of the way, the user's budget is what is shown.
		c.Lockout.Applications = []string{"127.0.0.1"}
	})
	if addrs.Portal == "" {
		t.Fatal("the portal is not listening")
	}

	b := &browser{t: t, ctx: chromium.Browser(t, 1100, 800), base: strings.TrimSuffix(addrs.Portal, "/"), dir: chromium.ScreenshotDir(t)}

	// Sign in with the password alone (no two-step yet), by keyboard.
	b.open("/signin")
	b.shot("signin", true)
	b.do(chromedp.SendKeys(chromedp.CSS("#name"), "alice"), chromedp.SendKeys(chromedp.CSS("#password"), "classmate"+kb.Enter),
		chromedp.WaitVisible(chromedp.CSS(`form[action="/setup/start"]`)))
	b.shot("setup-start", false)
	b.do(chromedp.SendKeys(chromedp.CSS("#label"), "phone"), chromedp.Click(chromedp.CSS(`form[action="/setup/start"] button`)),
		chromedp.WaitVisible(chromedp.CSS("#key")))
	b.shot("enrollment", true)

	// Read the key, as a person typing it into an app would.
	key := strings.ReplaceAll(b.text("#key"), " ", "")
	if len(key) != 32 {
		t.Fatalf("key on the page = %q", key)
	}
	code, _ := totp.GenerateCode(key, time.Now())
	b.do(chromedp.SendKeys(chromedp.CSS("#code"), code), chromedp.Click(chromedp.CSS(`form[action="/setup/confirm"] button`)),
		chromedp.WaitVisible(chromedp.CSS("#howto")))
	if n := b.count("ol.codes li"); n != 10 {
		t.Fatalf("recovery codes shown after set-up = %d, want 10", n)
	}
	if got := b.text("#howto ~ p.secret code, .secret code"); !strings.HasPrefix(got, "alice-garden-7") {
		t.Errorf("how-to example = %q; want one made from the name", got)
	}
	b.shot("set-up-done", true)

	// The LDAP front end with password + code (the next step's code: the
	// confirming code's step is used).
	next, _ := totp.GenerateCode(key, time.Now().Add(30*time.Second))
	stored := "classmate" + next
	dn := "uid=alice,ou=people,dc=example,dc=org"
	bind := func(secret string) error {
		out, err := exec.Command(ldapwhoami, "-x", "-H", "ldap://"+addrs.LDAP, "-D", dn, "-w", secret).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	}
	if err := bind(stored); err != nil {
		t.Fatalf("ldapwhoami with password and code: %v", err)
	}
	b.open("/devices")
	if got := b.text("tbody"); !strings.Contains(got, "LDAP") || !strings.Contains(got, "127.0.0.1") {
		t.Fatalf("devices page lists %q; want the LDAP sign-in", got)
	}
	b.shot("devices", true)
	b.do(chromedp.Click(chromedp.CSS(`form[action="/devices/revoke"] button`)), chromedp.WaitVisible(chromedp.CSS(".notice")))
	if err := bind(stored); err == nil {
		t.Fatal("the stored string still binds after the device was signed out in the portal")
	}

	// An app password for IMAP only.
	b.open("/app-passwords")
	b.do(chromedp.SendKeys(chromedp.CSS("#apname"), "old phone"), chromedp.Click(chromedp.CSS("#proto-imap")),
		chromedp.Click(chromedp.CSS(`form[action="/app-passwords/new"] button`)), chromedp.WaitVisible(chromedp.CSS("#apppw")))
	app := b.text("#apppw")
	if !regexp.MustCompile(`^[a-z]{4} [a-z]{4} [a-z]{4} [a-z]{4}$`).MatchString(app) {
		t.Fatalf("app password = %q; want four groups of four letters", app)
	}
	b.shot("app-password", true)
	imapLogin := func(secret string) ([]byte, error) {
		return exec.Command(curl, "-sS", "--max-time", "20", "-u", "alice:"+secret, "imap://"+addrs.IMAP+"/", "-X", "EXAMINE INBOX").CombinedOutput()
	}
	if out, err := imapLogin(app); err != nil {
		t.Fatalf("IMAP with the app password: %v: %s", err, out)
	}
	if err := bind(app); err == nil {
		t.Fatal("the IMAP-only app password bound over LDAP")
	}
	if err := bind(strings.ReplaceAll(app, " ", "")); err == nil {
		t.Fatal("the IMAP-only app password (without spaces) bound over LDAP")
	}
	b.open("/app-passwords")
	if got := b.text("tbody"); !strings.Contains(got, "old phone") || strings.Contains(got, "never") {
		t.Errorf("app passwords list = %q; want old phone with its last use", got)
	}
	b.open("/devices")
	if got := b.text("tbody"); !strings.Contains(got, "old phone") {
		t.Errorf("devices = %q; want the app password's IMAP sign-in named", got)
	}
	b.shot("devices-app-password", false)
	// Revoked, it signs in nowhere, at once.
	b.open("/app-passwords")
	b.do(chromedp.Click(chromedp.CSS(`form[action="/app-passwords/revoke"] button`)), chromedp.WaitVisible(chromedp.CSS(".notice")))
	if out, err := imapLogin(app); err == nil {
		t.Fatalf("IMAP with a revoked app password: %s", out)
	}

	// Every other page, for the screenshots and a look.
	for _, pg := range []struct{ path, name string }{{"/", "overview"}, {"/authenticators", "authenticators"},
		{"/recovery", "recovery"}, {"/methods", "methods"}} {
		b.open(pg.path)
		b.shot(pg.name, true)
	}
	b.open("/recovery/print")
	b.shot("recovery-print", false)
	core.History.Flush()
	b.open("/events")
	if got := b.text("ol.events"); !strings.Contains(got, "Signed in with the password and a code") ||
		!strings.Contains(got, "An app password was made") || !strings.Contains(got, "Refused") {
		t.Errorf("security events = %q", got)
	}
	b.shot("events", true)

	// CSRF: curl signs in (token from the page, as a browser would), then
	// posts a form without the token: refused, and nothing changed.
	jar := filepath.Join(t.TempDir(), "jar")
	tokenRE := regexp.MustCompile(`name="csrf" value="([^"]+)"`)
	page, _ := exec.Command(curl, "-sS", "-c", jar, addrs.Portal+"signin").Output()
	m := tokenRE.FindSubmatch(page)
	if m == nil {
		t.Fatalf("no token on the sign-in page: %s", page)
	}
	bobCode, _ := totp.GenerateCode(bobKey.Secret(), time.Now())
	status := func(args ...string) string {
		out, _ := exec.Command(curl, append([]string{"-sS", "-o", "/dev/null", "-w", "%{http_code}", "-b", jar, "-c", jar}, args...)...).Output()
		return string(out)
	}
	if s := status("-d", "name=bob&password=bobsecret&code="+bobCode, addrs.Portal+"signin"); s != "403" {
		t.Fatalf("sign-in without the token = %s, want 403", s)
	}
	if s := status("-d", "name=bob&password=bobsecret&code="+bobCode+"&csrf="+string(m[1]), addrs.Portal+"signin"); s != "303" {
		t.Fatalf("sign-in with the token = %s, want 303", s)
	}
	if s := status("-d", "name=x&protocol=imap", addrs.Portal+"app-passwords/new"); s != "403" {
		t.Fatalf("a form posted without the token = %s, want 403", s)
	}
	if s := status("-d", "name=x&protocol=imap&csrf=forged", addrs.Portal+"app-passwords/new"); s != "403" {
		t.Fatalf("a form posted with a forged token = %s, want 403", s)
	}
	bobID := mustUserID(t, core.Store, "bob")
	if aps, _ := core.Store.AppPasswords(ctx, bobID); len(aps) != 0 {
		t.Fatalf("a refused form made %d app passwords", len(aps))
	}

	// One budget: two wrong LDAP binds, two wrong IMAP logins and one
	// wrong portal sign-in lock bob out of the portal, the right
	// password and code included.
	for i := range 2 {
		if out, err := exec.Command(ldapwhoami, "-x", "-H", "ldap://"+addrs.LDAP, "-D", "uid=bob,ou=people,dc=example,dc=org",
			"-w", fmt.Sprintf("wrong-ldap-%d", i)).CombinedOutput(); err == nil {
			t.Fatalf("a wrong LDAP bind succeeded: %s", out)
		}
		if out, err := exec.Command(curl, "-sS", "--max-time", "20", "-u", fmt.Sprintf("bob:wrong-imap-%d", i), "imap://"+addrs.IMAP+"/").CombinedOutput(); err == nil {
			t.Fatalf("a wrong IMAP login succeeded: %s", out)
		}
	}
	b.do(chromedp.Click(chromedp.CSS(`form[action="/signout"] button`)), chromedp.WaitVisible(chromedp.CSS("#name")))
	signIn := func(pw, code string) string {
		b.open("/signin")
		b.do(chromedp.SendKeys(chromedp.CSS("#name"), "bob"), chromedp.SendKeys(chromedp.CSS("#password"), pw),
			chromedp.SendKeys(chromedp.CSS("#code"), code+kb.Enter), chromedp.WaitVisible(chromedp.CSS("p.error")))
		return b.text("p.error")
	}
	if msg := signIn("not-bobs", "123456"); strings.Contains(msg, "Too many") {
		t.Fatalf("locked before the fifth failure: %q", msg)
	}
	good, _ := totp.GenerateCode(bobKey.Secret(), time.Now().Add(30*time.Second))
	if msg := signIn("bobsecret", good); !strings.Contains(msg, "Too many failed sign-ins") {
		t.Fatalf("after 5 failures over LDAP, IMAP and the portal, the portal says %q; want the lockout", msg)
	}
	b.shot("locked", false)

	// The audit log: one decision per portal sign-in, one event per change.
	time.Sleep(100 * time.Millisecond)
	raw, err := os.ReadFile(auditFile)
	if err != nil {
		t.Fatal(err)
	}
	var portalDecisions, aliceChanges []string
	for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		var e map[string]any
		if json.Unmarshal([]byte(line), &e) != nil || e["protocol"] != "portal" {
			continue
		}
		switch {
		case e["msg"] == "decision":
			portalDecisions = append(portalDecisions, fmt.Sprint(e["user"], "/", e["result"], "/", e["reason"]))
		case e["msg"] == "change" && e["user"] == "alice":
			aliceChanges = append(aliceChanges, fmt.Sprint(e["action"]))
		}
		for _, secret := range []string{"classmate", "bobsecret", app, strings.ReplaceAll(app, " ", ""), key, code, next} {
			if strings.Contains(line, secret) {
				t.Fatalf("the audit log holds a secret: %s", line)
			}
		}
	}
	wantDecisions := []string{"alice/allow/password_setup", "bob/allow/code", "bob/deny/bad_code", "bob/deny/locked_out"}
	if strings.Join(portalDecisions, " ") != strings.Join(wantDecisions, " ") {
		t.Errorf("portal decisions in the audit log = %v, want %v", portalDecisions, wantDecisions)
	}
	wantChanges := []string{"authenticator_started", "authenticator_confirmed", "recovery_codes_made", "session_revoked", "app_password_made",
		"app_password_revoked"}
	if strings.Join(aliceChanges, " ") != strings.Join(wantChanges, " ") {
		t.Errorf("alice's changes in the audit log = %v, want %v", aliceChanges, wantChanges)
	}
}

func mustUserID(t *testing.T, st *store.Store, name string) int64 {
	t.Helper()
	u, err := st.User(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return u.ID
}
