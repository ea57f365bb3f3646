// Package credential splits the secret a password-only client submits into
// the account password and the appended one-time code.
package credential

import (
	"errors"
	"fmt"
	"strings"
)

// Rule says how a code is appended to a password.
//
// The zero Rule is not valid; start from DefaultRule.
type Rule struct {
	// Digits is the length of the appended code, 6 to 8.
	Digits int
	// Separator, when not empty, is a single character placed between the
	// password and the code ("classmate;557831"). The split happens at its
	// last occurrence, so a password may contain the separator itself.
	Separator string
}

// DefaultRule is six digits appended without a separator.
var DefaultRule = Rule{Digits: 6}

// Validate reports whether the rule is usable.
func (r Rule) Validate() error {
	if r.Digits < 6 || r.Digits > 8 {
		return fmt.Errorf("code length %d is out of range: it must be 6, 7 or 8 digits", r.Digits)
	}
	switch r.Separator {
	case "", ";", ",", ":", "|", "+", " ":
	default:
		return fmt.Errorf("separator %q is not supported: use one of ; , : | + or a space, or none", r.Separator)
	}
	return nil
}

// Parts is a submitted secret taken apart.
type Parts struct {
	// Password is what is left once the code (and separator) are removed.
	// When HasCode is false it is the whole submitted secret.
	Password string
	// Code is the appended code; empty when HasCode is false.
	Code string
	// HasCode says whether the secret ends in something shaped like a code:
	// r.Digits ASCII digits, or a recovery code (see IsRecoveryCode).
	HasCode bool
}

// RecoveryCodeLen is the length of a recovery code: three groups of four
// digits joined by '-' ("4821-0937-5512").
const RecoveryCodeLen = 14

// IsRecoveryCode reports whether s has the shape of a recovery code:
// three groups of four ASCII digits joined by '-'. The dashes keep the
// shape apart from an appended code under every rule: no run of 6 to 8
// digits is a recovery code, and no recovery code ends in more than four
// digits, so a secret's tail is one or the other, never both.
func IsRecoveryCode(s string) bool {
	if len(s) != RecoveryCodeLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if i == 4 || i == 9 {
			if s[i] != '-' {
				return false
			}
		} else if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// ErrEmpty is returned for an empty secret: an unauthenticated bind is not
// a sign-in (RFC 4513 5.1.2), whatever the rule.
var ErrEmpty = errors.New("empty secret")

// Split takes secret apart under rule r.
//
// A secret whose tail is not a run of exactly r.Digits ASCII digits (after
// the separator, when one is configured) has no code, and the whole secret
// is the password: the caller decides whether that is a password-only
// sign-in or a failure. A password may itself end in digits; only the last
// r.Digits characters are ever taken.
func Split(secret string, r Rule) (Parts, error) {
	if secret == "" {
		return Parts{}, ErrEmpty
	}
	whole := Parts{Password: secret}
	if r.Separator != "" {
		i := strings.LastIndex(secret, r.Separator)
		if i < 0 {
			return whole, nil
		}
		code := secret[i+len(r.Separator):]
		if (len(code) != r.Digits || !allDigits(code)) && !IsRecoveryCode(code) {
			return whole, nil
		}
		return Parts{Password: secret[:i], Code: code, HasCode: true}, nil
	}
	if len(secret) >= r.Digits {
		cut := len(secret) - r.Digits
		if code := secret[cut:]; allDigits(code) {
			return Parts{Password: secret[:cut], Code: code, HasCode: true}, nil
		}
	}
	if len(secret) >= RecoveryCodeLen {
		cut := len(secret) - RecoveryCodeLen
		if code := secret[cut:]; IsRecoveryCode(code) {
			return Parts{Password: secret[:cut], Code: code, HasCode: true}, nil
		}
	}
	return whole, nil
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
