package method

import (
	"fmt"
	"net/mail"
	"strings"

	"github.com/nyaruka/phonenumbers"
)

// ParsePhone returns a phone number in E.164 form ("+447700900123").
// Without a region the number must be international (start with +);
// with one ("GB"), national numbers of that region are accepted too.
func ParsePhone(s, region string) (string, error) {
	s = strings.TrimSpace(s)
	hint := "write it in international form, such as +44 7911 123456"
	if s == "" {
		return "", fmt.Errorf("empty phone number: %s", hint)
	}
	if region == "" && !strings.HasPrefix(s, "+") {
		return "", fmt.Errorf("phone %q has no country code: %s", s, hint)
	}
	n, err := phonenumbers.Parse(s, strings.ToUpper(region))
	if err != nil {
		return "", fmt.Errorf("phone %q is not a phone number (%v): %s", s, err, hint)
	}
	if !phonenumbers.IsValidNumber(n) {
		return "", fmt.Errorf("phone %q is not a valid number for its country: check the digits, and %s", s, hint)
	}
	return phonenumbers.Format(n, phonenumbers.E164), nil
}

// ValidRegion reports whether region is a region code phone numbers can
// be read in ("GB", "US").
func ValidRegion(region string) bool {
	return phonenumbers.GetSupportedRegions()[strings.ToUpper(region)]
}

// ParseEmail returns a plain e-mail address with its domain in lower case.
func ParseEmail(s string) (string, error) {
	s = strings.TrimSpace(s)
	a, err := mail.ParseAddress(s)
	if err != nil || a.Address != s || a.Name != "" {
		return "", fmt.Errorf("e-mail %q is not a plain address such as alice@example.org", s)
	}
	at := strings.LastIndexByte(s, '@')
	return s[:at] + strings.ToLower(s[at:]), nil
}
