package enroll_test

import (
	"context"
	"errors"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp"

	"github.com/stepgate/stepgate/internal/enroll"
	"github.com/stepgate/stepgate/internal/store"
	"github.com/stepgate/stepgate/internal/verifier"
	"github.com/stepgate/stepgate/internal/verifier/verifiertest"
)

func TestEnrollConfirm(t *testing.T) {
	ctx := context.Background()
	e := verifiertest.New(t, verifiertest.Options{})
	e.AddUser(t, "alice", "pw")
	p := verifier.DefaultTOTP
	en, err := enroll.Start(ctx, e.Store, "alice", "", "Example Corp", p)
	if err != nil {
		t.Fatal(err)
	}
	key, err := otp.NewKeyFromURL(en.URI)
	if err != nil {
		t.Fatal(err)
	}
	if key.Issuer() != "Example Corp" || key.AccountName() != "alice" || key.Secret() != en.Secret || en.Label != enroll.DefaultLabel {
		t.Fatalf("URI %s does not describe the enrollment", en.URI)
	}
	if g := en.GroupedSecret(); strings.ReplaceAll(g, " ", "") != en.Secret || !strings.Contains(g, " ") {
		t.Fatalf("grouped secret %q", g)
	}
	var qr strings.Builder
	en.WriteTerminalQR(&qr)
	if strings.Count(qr.String(), "\n") < 15 {
		t.Fatalf("terminal QR code too small:\n%s", qr.String())
	}
	pngPath := filepath.Join(t.TempDir(), "qr.png")
	if err := en.WritePNG(pngPath); err != nil {
		t.Fatal(err)
	}
	f, _ := os.Open(pngPath)
	img, err := png.Decode(f)
	f.Close()
	if err != nil || img.Bounds().Dx() < 200 {
		t.Fatalf("QR PNG: %v", err)
	}

	now := time.Now()
	if _, err := enroll.Confirm(ctx, e.Store, p, "alice", "000000", now); !errors.Is(err, enroll.ErrBadCode) {
		t.Fatalf("wrong code: %v", err)
	}
	code, _ := p.Code(en.Secret, now)
	if _, err := enroll.Confirm(ctx, e.Store, p, "alice", code, now); err != nil {
		t.Fatal(err)
	}
	u, _ := e.Store.User(ctx, "alice")
	if u.TwoStep != store.TwoStepActive {
		t.Fatalf("two-step %s after confirm", u.TwoStep)
	}
	e.Verifier.Refresh(ctx)
	// The confirming code cannot also sign in.
	d := e.Verifier.Verify(ctx, verifier.Attempt{Protocol: "cli", User: "alice", Secret: "pw" + code})
	if d.Allowed() || d.Reason != verifier.ReasonReplayed {
		t.Fatalf("confirming code signed in: %s", d.Reason)
	}
	if _, err := enroll.Confirm(ctx, e.Store, p, "alice", code, now); err == nil || !strings.Contains(err.Error(), "no pending") {
		t.Fatalf("confirm without a pending authenticator: %v", err)
	}
}

func TestReenrollReplacesPending(t *testing.T) {
	ctx := context.Background()
	e := verifiertest.New(t, verifiertest.Options{})
	u := e.AddUser(t, "bob", "pw")
	first, _ := enroll.Start(ctx, e.Store, "bob", "phone", "stepgate", verifier.DefaultTOTP)
	second, err := enroll.Start(ctx, e.Store, "bob", "phone", "stepgate", verifier.DefaultTOTP)
	if err != nil {
		t.Fatal(err)
	}
	row, _ := e.Store.User(ctx, u.Name)
	auths, _ := e.Store.Authenticators(ctx, row.ID, false)
	if len(auths) != 1 || auths[0].Secret != second.Secret || first.Secret == second.Secret {
		t.Fatalf("re-enrolling kept %d authenticators", len(auths))
	}
	code, _ := verifier.DefaultTOTP.Code(second.Secret, time.Now())
	if _, err := enroll.Confirm(ctx, e.Store, verifier.DefaultTOTP, "bob", code, time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := enroll.Start(ctx, e.Store, "bob", "phone", "stepgate", verifier.DefaultTOTP); !errors.Is(err, store.ErrExists) {
		t.Fatalf("enrolling over a confirmed label: %v", err)
	}
}

func TestServiceAccountsDoNotEnroll(t *testing.T) {
	e := verifiertest.New(t, verifiertest.Options{})
	e.AddUser(t, "app", "pw", func(n *store.NewUser) { n.Service = true })
	if _, err := enroll.Start(context.Background(), e.Store, "app", "", "stepgate", verifier.DefaultTOTP); err == nil {
		t.Fatal("a service account enrolled an authenticator")
	}
}
