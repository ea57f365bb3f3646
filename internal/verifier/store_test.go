package verifier_test

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/stepgate/stepgate/internal/store"
	"github.com/stepgate/stepgate/internal/verifier"
)

// recordingStore is a verifier.Store that is not a *store.Store: it
// passes every call on and counts the steps consumed.
type recordingStore struct {
	verifier.Store
	consumed atomic.Int32
}

func (r *recordingStore) ConsumeStepWithSession(ctx context.Context, id, step int64, sess *store.SessionRecord) error {
	r.consumed.Add(1)
	return r.Store.ConsumeStepWithSession(ctx, id, step, sess)
}

// TestVerifierUsesItsStoreInterface: the verifier decides through the
// calls verifier.Store declares, so any implementation stands in for
// the store: a sign-in with a code records its step there, once, and the
// replay of that code is refused.
func TestVerifierUsesItsStoreInterface(t *testing.T) {
	rec := &recordingStore{}
	e := newEnv(t, func(c *verifier.Config) {
		rec.Store = c.Store
		c.Store = rec
	})
	alice := e.AddEnrolled(t, "alice", "classmate")
	code := alice.Code(t)
	want(t, verify(e, attempt("alice", "classmate"+code)), verifier.Allow, verifier.ReasonCode)
	if n := rec.consumed.Load(); n != 1 {
		t.Fatalf("ConsumeStepWithSession called %d times through the interface, want 1", n)
	}
	want(t, verify(e, attempt("alice", "classmate;"+code)), verifier.Deny, verifier.ReasonReplayed)
}

// TestNilStoreIsRefused: a nil *store.Store is no store, as before the
// field became an interface (which a typed nil would otherwise fill).
func TestNilStoreIsRefused(t *testing.T) {
	e := newEnv(t)
	var none *store.Store
	if _, err := verifier.New(verifier.Config{Store: none, Sessions: e.Sessions}); err == nil {
		t.Fatal("verifier.New accepted a nil *store.Store")
	}
}
