package verifier

import (
	"context"

	"github.com/stepgate/stepgate/internal/store"
)

// Store is what the verifier needs of durable state; *store.Store has it.
// Declared here so that the decision depends on these five calls, not on
// the whole store, and a test or another backend can stand in for it.
type Store interface {
	accountSource
	// PruneChanges keeps the newest keep entries of the change log.
	PruneChanges(ctx context.Context, keep int64) error
	// ConsumeStepWithSession records that step of authenticator id was
	// accepted, and the sign-in's session with it (nil: none); it fails
	// with store.ErrStepUsed when the step already was, and then writes
	// no session.
	ConsumeStepWithSession(ctx context.Context, id, step int64, sess *store.SessionRecord) error
}

// accountSource is what the account cache reads: accounts, and the
// generation and change log that say when to drop them.
type accountSource interface {
	// Account returns the user called name and its confirmed
	// authenticators, or store.ErrNotFound.
	Account(ctx context.Context, name string) (*store.User, []store.Authenticator, error)
	Generation(ctx context.Context) (int64, error)
	ChangesSince(ctx context.Context, gen int64, limit int) (names []string, to int64, complete bool, err error)
}

var _ Store = (*store.Store)(nil)
