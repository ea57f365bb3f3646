package admin_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"

	"github.com/stepgate/stepgate/internal/admin"
	"github.com/stepgate/stepgate/internal/config"
	"github.com/stepgate/stepgate/internal/datadir"
	"github.com/stepgate/stepgate/internal/enroll"
	"github.com/stepgate/stepgate/internal/password"
	"github.com/stepgate/stepgate/internal/server"
	"github.com/stepgate/stepgate/internal/store"
	"github.com/stepgate/stepgate/internal/testenv"
	"github.com/stepgate/stepgate/internal/verifier"
)

// checkRig is a server's core with its control API on a real socket, and
// every log it writes kept for inspection.
type checkRig struct {
	core   *server.Core
	client *admin.Client
	socket string
	logs   *testenv.Buffer // the control API's and the core's operational log
	audit  string          // the audit log file
}

func newCheckRig(t *testing.T) *checkRig {
	t.Helper()
	t.Setenv(datadir.KeyFileEnv, "")
	tmp := t.TempDir()
	cfg := config.Default()
	cfg.Audit.File = filepath.Join(tmp, "audit.log")
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	r := &checkRig{logs: &testenv.Buffer{}, audit: cfg.Audit.File}
	log := slog.New(slog.NewJSONHandler(r.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	dir := datadir.New(filepath.Join(tmp, "data"))
	core, closer, err := server.NewCore(context.Background(), cfg, dir, log)
	if err != nil {
		t.Fatal(err)
	}
	r.core = core
	r.socket = dir.Socket()
	l, err := admin.ListenControl(r.socket)
	if err != nil {
		closer.Close()
		t.Fatal(err)
	}
	srv := admin.NewHTTPServer((&admin.Control{Store: core.Store, Verifier: core.Verifier, Log: log}).Handler())
	srv.ErrorLog = slog.NewLogLogger(log.Handler(), slog.LevelError)
	go srv.Serve(l)
	t.Cleanup(func() {
		srv.Close()
		closer.Close()
	})
	r.client = admin.NewClient(r.socket)
	return r
}

// enrolled adds name with pw and a confirmed authenticator (its code at
// now used up), and returns the TOTP secret.
func (r *checkRig) enrolled(t *testing.T, name, pw string, now time.Time) string {
	t.Helper()
	ctx := context.Background()
	hash, err := password.Hash(pw)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.core.Store.AddUser(ctx, store.NewUser{Name: name, PasswordHash: hash}); err != nil {
		t.Fatal(err)
	}
	cfg := r.core.Config
	p := verifier.TOTP{Digits: cfg.TwoStep.Digits, Period: cfg.TwoStep.Period.D(), Skew: cfg.TwoStep.Skew}
	e, err := enroll.Start(ctx, r.core.Store, name, "phone", cfg.TwoStep.Issuer, p)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := totp.GenerateCode(e.Secret, now)
	if _, err := enroll.Confirm(ctx, r.core.Store, p, name, c, now); err != nil {
		t.Fatal(err)
	}
	if _, err := r.core.Verifier.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	return e.Secret
}

// TestCheckSharesTheServersSessions: a check over the control socket is
// decided by the server's own verifier, so the session it opens is the
// server's (a front end's next attempt with the same string is a session
// hit, not a replayed code), and a second check of the same string is one
// too. Deciding in another process, as check did, makes the front end's
// attempt a replay.
func TestCheckSharesTheServersSessions(t *testing.T) {
	r := newCheckRig(t)
	ctx := context.Background()
	now := time.Now()
	const pw = "classmate"
	secret := r.enrolled(t, "alice", pw, now)
	next, _ := totp.GenerateCode(secret, now.Add(30*time.Second))
	stored := pw + next

	d, err := r.client.Check(ctx, "ALICE", stored)
	if err != nil || !d.Allowed() || d.Reason != verifier.ReasonCode {
		t.Fatalf("check with password+code: %+v, %v", d, err)
	}
	ss := r.core.Verifier.Sessions().List("alice")
	if len(ss) != 1 || ss[0].Protocol != "cli" || ss[0].Remote != "" {
		t.Fatalf("sessions after the check: %+v, want one of protocol cli with no remote", ss)
	}
	ldap := r.core.Verifier.Verify(ctx, verifier.Attempt{Protocol: "ldap", User: "alice", Secret: stored, Remote: "127.0.0.1"})
	if ldap.Reason != verifier.ReasonSession {
		t.Fatalf("the same string over LDAP after the check: %s/%s, want a session hit", ldap.Result, ldap.Reason)
	}
	if d, err := r.client.Check(ctx, "alice", stored); err != nil || d.Reason != verifier.ReasonSession {
		t.Fatalf("the same string checked again: %+v, %v, want a session hit", d, err)
	}

	// A wrong code: deny, the internal reason for --verbose, no message.
	d, err = r.client.Check(ctx, "alice", pw+"000000")
	if err != nil || d.Allowed() || d.Reason != verifier.ReasonBadCode || d.Message != "" {
		t.Fatalf("check with a wrong code: %+v, %v", d, err)
	}
}

// TestCheckSecretNotLogged: neither the control API's log, the core's
// operational log nor the audit log holds the secret or the code of a
// check, whether allowed, denied, or malformed.
func TestCheckSecretNotLogged(t *testing.T) {
	r := newCheckRig(t)
	ctx := context.Background()
	now := time.Now()
	const pw = "Zebra-Quartz-71"
	secret := r.enrolled(t, "alice", pw, now)
	next, _ := totp.GenerateCode(secret, now.Add(30*time.Second))
	if d, err := r.client.Check(ctx, "alice", pw+next); err != nil || !d.Allowed() {
		t.Fatalf("check: %+v, %v", d, err)
	}
	if d, err := r.client.Check(ctx, "alice", pw+"654321"); err != nil || d.Allowed() {
		t.Fatalf("check with a wrong code: %+v, %v", d, err)
	}
	// A body cut off inside the secret, and one too large to read.
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", r.socket)
	}}}
	for _, body := range []string{
		`{"user":"alice","secret":"` + pw + `12`,
		`{"user":"alice","secret":"` + pw + strings.Repeat("9", 20<<10) + `"}`,
	} {
		resp, err := hc.Post("http://stepgate/v1/check", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || bytes.Contains(b, []byte(pw)) {
			t.Fatalf("malformed check: %d %s, want 400 without the secret", resp.StatusCode, b)
		}
	}
	audit, err := os.ReadFile(r.audit)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(audit, []byte(`"protocol":"cli"`)) {
		t.Fatalf("the checks were not audited:\n%s", audit)
	}
	for name, text := range map[string]string{"audit log": string(audit), "log": r.logs.String()} {
		for _, s := range []string{pw, next, "654321"} {
			if strings.Contains(text, s) {
				t.Errorf("the %s holds %q:\n%s", name, s, text)
			}
		}
	}
}

// TestCheckNotRunning: with no server on the socket the client says so
// with ErrNotRunning, which is what makes check decide locally.
func TestCheckNotRunning(t *testing.T) {
	_, err := admin.NewClient(filepath.Join(t.TempDir(), "control.sock")).Check(context.Background(), "alice", "x")
	if !errors.Is(err, admin.ErrNotRunning) {
		t.Fatalf("check without a server: %v, want ErrNotRunning", err)
	}
}
