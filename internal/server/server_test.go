package server

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"

	"github.com/stepgate/stepgate/internal/config"
	"github.com/stepgate/stepgate/internal/datadir"
	"github.com/stepgate/stepgate/internal/verifier"
)

// start runs the server in-process until the test's context ends; it
// returns the core once serving, and a stop function that waits.
func start(t *testing.T, dir datadir.Dir, demo bool, out io.Writer) (*Core, Addrs, func()) {
	t.Helper()
	return startWith(t, dir, demo, out, nil)
}

// startWith is start with a changed configuration.
func startWith(t *testing.T, dir datadir.Dir, demo bool, out io.Writer, mod func(*config.Config)) (*Core, Addrs, func()) {
	t.Helper()
	cfg := config.Default()
	cfg.Admin.Listen, cfg.Portal.Listen = "127.0.0.1:0", "127.0.0.1:0"
	cfg.LDAP.Listen, cfg.IMAP.Listen = "off", "off"
	cfg.Audit.File = filepath.Join(t.TempDir(), "audit.log")
	if mod != nil {
		mod(cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan struct{})
	var core *Core
	var addrs Addrs
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Options{Config: cfg, DataDir: dir, Demo: demo, Out: out,
			Log:     slog.New(slog.NewTextHandler(io.Discard, nil)),
			Started: func(c *Core, a Addrs) { core, addrs = c, a; close(started) }})
	}()
	select {
	case <-started:
	case err := <-done:
		cancel()
		t.Fatalf("server stopped before serving: %v", err)
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatal("server did not start in 30s")
	}
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("server: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("server did not stop in 30s")
		}
	}
	t.Cleanup(stop)
	return core, addrs, stop
}

// TestDemoAndRestart: the demo account signs in; its session survives a
// restart of the server; a new run gives the demo a new password.
func TestDemoAndRestart(t *testing.T) {
	t.Setenv(datadir.KeyFileEnv, "")
	dir := datadir.New(filepath.Join(t.TempDir(), "data"))
	var out bytes.Buffer
	core, addrs, stop := start(t, dir, true, &out)
	banner := out.String()
	pw := field(t, banner, "password:")
	if !strings.Contains(banner, " --data-dir "+dir.Path+" check demo") {
		t.Fatalf("banner lacks the commands to try:\n%s", banner)
	}
	if addrs.Portal == "" || !strings.Contains(banner, "Self-service portal: "+addrs.Portal) {
		t.Fatalf("banner lacks the portal's URL %q:\n%s", addrs.Portal, banner)
	}
	u, err := core.Store.User(context.Background(), DemoUser)
	if err != nil {
		t.Fatal(err)
	}
	auths, _ := core.Store.Authenticators(context.Background(), u.ID, true)
	if len(auths) != 1 || !strings.Contains(banner, strings.ReplaceAll(auths[0].Secret[:4], " ", "")) {
		t.Fatalf("demo authenticator not confirmed or not printed")
	}
	code, _ := totp.GenerateCode(auths[0].Secret, time.Now())
	secret := pw + code
	d := core.Verifier.Verify(context.Background(), verifier.Attempt{Protocol: "ldap", User: DemoUser, Secret: secret, Remote: "127.0.0.1"})
	if !d.Allowed() {
		t.Fatalf("demo sign-in: %s", d.Reason)
	}
	stop()
	if _, err := os.Stat(filepath.Join(dir.Path, "sessions.snap")); err != nil {
		t.Fatalf("no session snapshot at shutdown: %v", err)
	}

	core2, _, _ := start(t, dir, false, io.Discard)
	d = core2.Verifier.Verify(context.Background(), verifier.Attempt{Protocol: "ldap", User: DemoUser, Secret: secret, Remote: "127.0.0.1"})
	if d.Reason != verifier.ReasonSession {
		t.Fatalf("after a restart the same string gives %s/%s, want a session hit", d.Result, d.Reason)
	}
	if _, err := os.Stat(filepath.Join(dir.Path, "sessions.snap")); err == nil {
		t.Fatal("snapshot left in place after it was loaded")
	}
}

func field(t *testing.T, text, label string) string {
	t.Helper()
	for _, line := range strings.Split(text, "\n") {
		if _, rest, ok := strings.Cut(line, label); ok {
			if f := strings.Fields(rest); len(f) > 0 {
				return f[0]
			}
		}
	}
	t.Fatalf("no %q in:\n%s", label, text)
	return ""
}
