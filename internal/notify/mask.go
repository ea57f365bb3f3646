package notify

import (
	"strings"

	"github.com/stepgate/stepgate/internal/store"
)

// MaskPhone hides all but the last four digits of a phone number:
// "+447700900123" becomes "***-***-0123".
func MaskPhone(p string) string {
	digits := strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' {
			return r
		}
		return -1
	}, p)
	if len(digits) < 4 {
		return "***-***-****"
	}
	return "***-***-" + digits[len(digits)-4:]
}

// MaskEmail hides the local part of an address but its first letter:
// "alice@example.org" becomes "a***@example.org".
func MaskEmail(a string) string {
	at := strings.LastIndexByte(a, '@')
	if at < 1 {
		return "***"
	}
	return a[:1] + "***" + a[at:]
}

// Mask hides an address of kind for logs and for the person at a
// sign-in prompt, who may not be its owner.
func Mask(kind store.MethodKind, address string) string {
	if kind == store.MethodSMS {
		return MaskPhone(address)
	}
	return MaskEmail(address)
}

// scrub replaces every secret and the recipient in s, so that an error
// text from a transport (which may echo what it was given) can be logged.
func scrub(s string, kind store.MethodKind, m Message) string {
	for _, sec := range m.Secrets {
		if sec != "" {
			s = strings.ReplaceAll(s, sec, "[code]")
		}
	}
	if m.To != "" {
		mask := Mask(kind, m.To)
		s = strings.ReplaceAll(s, m.To, mask)
		if kind == store.MethodSMS {
			s = strings.ReplaceAll(s, strings.TrimPrefix(m.To, "+"), mask)
		}
	}
	return s
}
