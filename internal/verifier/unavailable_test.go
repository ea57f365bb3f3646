package verifier_test

import (
	"context"
	"database/sql"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/stepgate/stepgate/internal/notify"
	"github.com/stepgate/stepgate/internal/recovery"
	"github.com/stepgate/stepgate/internal/store"
	"github.com/stepgate/stepgate/internal/verifier"
)

// TestUnrecordedCodeIsNotUsed: when the used code cannot be written (here
// a trigger refuses the write, as a full disk would), the attempt is
// unavailable, not a replay, no failure is counted (more attempts than
// the lockout budget), and the same string signs in once writes work.
func TestUnrecordedCodeIsNotUsed(t *testing.T) {
	e := newEnv(t)
	alice := e.AddEnrolled(t, "alice", "classmate")
	// A second connection to the same file, as another process would have.
	db, err := sql.Open("sqlite", "file:"+filepath.Join(e.Dir, "stepgate.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	if _, err := db.ExecContext(ctx, `CREATE TRIGGER refuse BEFORE UPDATE OF last_step ON authenticators
		BEGIN SELECT RAISE(ABORT, 'write refused by the test'); END`); err != nil {
		t.Fatal(err)
	}
	secret := "classmate" + alice.Code(t)
	for range 7 {
		want(t, verify(e, attempt("alice", secret)), verifier.Deny, verifier.ReasonUnavailable)
	}
	if _, err := db.ExecContext(ctx, `DROP TRIGGER refuse`); err != nil {
		t.Fatal(err)
	}
	want(t, verify(e, attempt("alice", secret)), verifier.Allow, verifier.ReasonCode)
	// And now it is used.
	want(t, verify(e, attempt("alice", "classmate;"+alice.Code(t))), verifier.Deny, verifier.ReasonReplayed)
}

// TestUnrecordedRecoveryCodeIsNotUsed: the same for a recovery code.
func TestUnrecordedRecoveryCodeIsNotUsed(t *testing.T) {
	var rec *recovery.Service
	e := newEnv(t, func(c *verifier.Config) {
		st := c.Store.(*store.Store)
		rec = recovery.New(st, notify.NewAlerter(st, nil, notify.DefaultAlerts, notify.AlerterOptions{}),
			slog.New(slog.DiscardHandler))
		c.Codes = []verifier.CodeSource{rec}
	})
	e.AddEnrolled(t, "alice", "classmate")
	ctx := context.Background()
	codes, err := rec.Generate(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", "file:"+filepath.Join(e.Dir, "stepgate.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, `CREATE TRIGGER refuse BEFORE UPDATE ON recovery_codes
		BEGIN SELECT RAISE(ABORT, 'write refused by the test'); END`); err != nil {
		t.Fatal(err)
	}
	secret := "classmate" + codes[0]
	for range 7 {
		want(t, verify(e, attempt("alice", secret)), verifier.Deny, verifier.ReasonUnavailable)
	}
	if _, err := db.ExecContext(ctx, `DROP TRIGGER refuse`); err != nil {
		t.Fatal(err)
	}
	want(t, verify(e, attempt("alice", secret)), verifier.Allow, verifier.ReasonCode)
	e.Sessions.RevokeUserEverywhere(context.Background(), "alice")
	if d := verify(e, attempt("alice", secret)); d.Allowed() {
		t.Fatal("a recovery code worked twice")
	}
}
