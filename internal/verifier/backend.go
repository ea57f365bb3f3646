package verifier

import (
	"context"
	"errors"

	"github.com/stepgate/stepgate/internal/password"
)

// ErrBadPassword is returned by a PasswordChecker for a wrong password.
var ErrBadPassword = errors.New("wrong password")

// ErrUnavailable is returned by a PasswordChecker that could not reach its
// backend: the attempt fails, but the client's password may well be right.
var ErrUnavailable = errors.New("password backend unavailable")

// ErrBusy is returned when a password check could not start in time
// because too many run at once: the client should try again shortly.
var ErrBusy = errors.New("too many password checks at once")

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

// checkLocal checks pw against an account's stored hash.
func checkLocal(hash, pw string) error {
	switch err := password.Verify(hash, pw); {
	case err == nil:
		return nil
	case errors.Is(err, password.ErrMismatch):
		return ErrBadPassword
	default:
		return err
	}
}
