package verifier

import (
	"context"
	"errors"
	"fmt"

	"github.com/stepgate/stepgate/internal/password"
)

// ErrBadPassword is returned by a PasswordChecker for a wrong password.
var ErrBadPassword = errors.New("wrong password")

// ErrUnavailable is returned by a PasswordChecker that could not reach its
// backend: the attempt fails, but the client's password may well be right.
var ErrUnavailable = errors.New("password backend unavailable")

// ErrBusy is returned when the local password check could not start
// within its wait because every hashing slot is taken: like
// ErrUnavailable, the client's password may well be right.
var ErrBusy = errors.New("password hashing busy")

// PasswordChecker checks a user's password. Local hashes, an upstream LDAP
// bind and an upstream IMAP login all sit behind it.
type PasswordChecker interface {
	// CheckPassword returns nil for the right password, ErrBadPassword
	// for a wrong one, and an error wrapping ErrUnavailable when the
	// backend cannot tell.
	CheckPassword(ctx context.Context, user, password string) error
}

// Identifier is implemented by a PasswordChecker whose backend can say
// which account a successful check authenticated. An LDAP directory maps
// many forms of a name to one entry, so after its bind the verifier asks
// whom it bound, and refuses when that is not the account the decision
// (code required or not, which authenticators, which session) was made
// for.
type Identifier interface {
	// Identity returns the names the backend holds for the account the
	// last successful CheckPassword authenticated (the values of the
	// directory's user attribute), or an error wrapping ErrUnavailable.
	Identity(ctx context.Context) ([]string, error)
}

// defaultHashes bounds the hashes of verifiers built without a limiter
// (tests, the CLI): one per process, as the hashes share one machine.
var defaultHashes = password.NewLimiter(password.Limits{})

// checkLocal checks pw against an account's stored hash, under the
// verifier's hashing limiter.
func (v *Verifier) checkLocal(ctx context.Context, hash, pw string) error {
	l := v.hashes
	if l == nil {
		l = defaultHashes
	}
	switch err := l.Verify(ctx, hash, pw); {
	case err == nil:
		return nil
	case errors.Is(err, password.ErrMismatch):
		return ErrBadPassword
	case errors.Is(err, password.ErrBusy):
		return fmt.Errorf("%w: %v", ErrBusy, err)
	default:
		return err
	}
}

// hashSlotFree reports whether a local password check could have started
// now, without running one.
func (v *Verifier) hashSlotFree(ctx context.Context) bool {
	l := v.hashes
	if l == nil {
		l = defaultHashes
	}
	release, err := l.Acquire(ctx)
	if err != nil {
		return false
	}
	release()
	return true
}
