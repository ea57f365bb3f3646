package verifier_test

import (
	"context"
	"testing"
	"time"

	"github.com/stepgate/stepgate/internal/password"
	"github.com/stepgate/stepgate/internal/session"
	"github.com/stepgate/stepgate/internal/verifier"
)

// TestBusyWhenHashingIsFull: with every hashing slot taken, an attempt
// that needs a password hash is answered busy after the limiter's wait,
// counts no failure (many of them lock nobody out), and an unknown user
// gets busy too, so that load does not tell names apart.
func TestBusyWhenHashingIsFull(t *testing.T) {
	hashes := password.NewLimiter(password.Limits{Concurrent: 1, Wait: 20 * time.Millisecond})
	snd := &sender{}
	e := newEnv(t, func(c *verifier.Config) {
		c.Hashes = hashes
		c.Sender = snd
		c.Codes = []verifier.CodeSource{snd}
	})
	alice := e.AddEnrolled(t, "alice", "classmate")
	release, err := hashes.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ { // more than lockout.max_failures
		d := verify(e, attempt("alice", "classmate"+alice.Code(t)))
		want(t, d, verifier.Deny, verifier.ReasonBusy)
		if !d.Busy() || d.Unavailable() {
			t.Fatalf("Busy() = %v, Unavailable() = %v", d.Busy(), d.Unavailable())
		}
		want(t, verify(e, attempt("nobody", "classmate")), verifier.Deny, verifier.ReasonBusy)
	}
	if _, locked := e.Sessions.Locked(session.UserKey("alice")); locked {
		t.Fatal("busy answers counted as failures")
	}
	release()
	want(t, verify(e, attempt("alice", "classmate"+alice.Code(t))), verifier.Allow, verifier.ReasonCode)
}
