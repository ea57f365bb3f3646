// Package username turns the many forms in which a user name arrives
// (case variants, full-width letters, compatibility characters) into the
// one form that names an account: the PRECIS UsernameCaseMapped profile of
// RFC 8265. Every place where a name becomes an account (the store, the
// verifier's cache, session keys, failure counters, the CLI) goes through
// Canonical, so that two forms of one name can never be two accounts, and
// a crafted form can never make a real account look unknown.
package username

import (
	"errors"
	"fmt"
	"unicode/utf8"

	"golang.org/x/text/secure/precis"
)

// MaxBytes bounds a name before the profile runs on it: no account name is
// longer, and the profile's work grows with its input.
const MaxBytes = 256

// ErrInvalid is wrapped by every error Canonical returns.
var ErrInvalid = errors.New("not a valid user name")

// Canonical returns the canonical form of name, or an error wrapping
// ErrInvalid when the profile rejects it (spaces, control characters,
// symbols outside the identifier class, an empty result). The error never
// quotes the name: it may come from an attacker and end up in a log.
func Canonical(name string) (string, error) {
	if name == "" {
		return "", fmt.Errorf("%w: empty", ErrInvalid)
	}
	if len(name) > MaxBytes {
		return "", fmt.Errorf("%w: longer than %d bytes", ErrInvalid, MaxBytes)
	}
	if c, ok := asciiCanonical(name); ok {
		return c, nil
	}
	if !utf8.ValidString(name) {
		return "", fmt.Errorf("%w: not UTF-8", ErrInvalid)
	}
	out, err := precis.UsernameCaseMapped.String(name)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	// The profile is meant to be idempotent; a form that changes again is
	// not one we can use as a key.
	if again, err := precis.UsernameCaseMapped.String(out); err != nil || again != out {
		return "", fmt.Errorf("%w: not stable under the profile", ErrInvalid)
	}
	return out, nil
}

// asciiCanonical is the profile's answer for a name of printable ASCII
// alone (every byte from '!' to '~'), which is almost every name: the
// identifier class takes all of them, width mapping and normalisation
// leave them as they are, and case mapping is ASCII lower case. It costs
// nanoseconds where the profile costs a fraction of a microsecond, on the
// path of every session hit.
func asciiCanonical(name string) (string, bool) {
	upper := false
	for i := 0; i < len(name); i++ {
		switch c := name[i]; {
		case c < '!' || c > '~':
			return "", false
		case 'A' <= c && c <= 'Z':
			upper = true
		}
	}
	if !upper {
		return name, true
	}
	b := []byte(name)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b), true
}
