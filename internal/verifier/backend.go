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

// PasswordChecker checks a user's password. Local hashes, an upstream LDAP
// bind and an upstream IMAP login all sit behind it.
type PasswordChecker interface {
	// CheckPassword returns nil for the right password, ErrBadPassword
	// for a wrong one, and an error wrapping ErrUnavailable when the
	// backend cannot tell.
	CheckPassword(ctx context.Context, user, password string) error
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
