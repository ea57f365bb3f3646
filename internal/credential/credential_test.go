package credential

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestSplit(t *testing.T) {
	semi := Rule{Digits: 6, Separator: ";"}
	eight := Rule{Digits: 8}
	tests := []struct {
		name   string
		secret string
		rule   Rule
		want   Parts
	}{
		{"password and code", "classmate557831", DefaultRule, Parts{"classmate", "557831", true}},
		{"password ending in digits", "hunter2024557831", DefaultRule, Parts{"hunter2024", "557831", true}},
		{"password that is all digits", "123456557831", DefaultRule, Parts{"123456", "557831", true}},
		{"code only", "557831", DefaultRule, Parts{"", "557831", true}},
		{"too short for a code", "12345", DefaultRule, Parts{"12345", "", false}},
		{"no code", "classmate", DefaultRule, Parts{"classmate", "", false}},
		{"five digits at the end", "classmate55783", DefaultRule, Parts{"classmate55783", "", false}},
		{"letter inside the tail", "classmate5578a1", DefaultRule, Parts{"classmate5578a1", "", false}},
		{"unicode password", "pässwörd557831", DefaultRule, Parts{"pässwörd", "557831", true}},
		{"non-ASCII digits are not a code", "pw١٢٣٤٥٦", DefaultRule, Parts{"pw١٢٣٤٥٦", "", false}},
		{"eight digits", "classmate12345678", eight, Parts{"classmate", "12345678", true}},
		{"eight-digit rule, six digits sent", "classmate557831", eight, Parts{"classmate557831", "", false}},
		{"separator", "classmate;557831", semi, Parts{"classmate", "557831", true}},
		{"separator in the password", "class;mate;557831", semi, Parts{"class;mate", "557831", true}},
		{"separator rule, no separator", "classmate557831", semi, Parts{"classmate557831", "", false}},
		{"separator, tail too long", "classmate;5578310", semi, Parts{"classmate;5578310", "", false}},
		{"separator, tail not digits", "classmate;abcdef", semi, Parts{"classmate;abcdef", "", false}},
		{"separator at the end", "classmate;", semi, Parts{"classmate;", "", false}},
		{"separator, empty password", ";557831", semi, Parts{"", "557831", true}},
		{"recovery code", "classmate4821-0937-5512", DefaultRule, Parts{"classmate", "4821-0937-5512", true}},
		{"recovery code, password ends in digits", "hunter24821-0937-5512", DefaultRule, Parts{"hunter2", "4821-0937-5512", true}},
		{"recovery code alone", "4821-0937-5512", DefaultRule, Parts{"", "4821-0937-5512", true}},
		{"code after a recovery-shaped password", "pw4821-0937-5512557831", DefaultRule, Parts{"pw4821-0937-5512", "557831", true}},
		{"recovery code, separator", "classmate;4821-0937-5512", semi, Parts{"classmate", "4821-0937-5512", true}},
		{"recovery code, separator rule, no separator", "classmate4821-0937-5512", semi, Parts{"classmate4821-0937-5512", "", false}},
		{"recovery shape with a digit short", "classmate821-0937-5512", semi, Parts{"classmate821-0937-5512", "", false}},
		{"dashes in the wrong places", "classmate48210-937-5512", DefaultRule, Parts{"classmate48210-937-5512", "", false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Split(tt.secret, tt.rule)
			if err != nil {
				t.Fatalf("Split(%q) error: %v", tt.secret, err)
			}
			if got != tt.want {
				t.Fatalf("Split(%q) = %+v, want %+v", tt.secret, got, tt.want)
			}
		})
	}
}

func TestSplitEmpty(t *testing.T) {
	for _, r := range []Rule{DefaultRule, {Digits: 7, Separator: ","}} {
		if _, err := Split("", r); !errors.Is(err, ErrEmpty) {
			t.Fatalf("Split(\"\", %+v) error = %v, want ErrEmpty", r, err)
		}
	}
}

func TestRuleValidate(t *testing.T) {
	for _, r := range []Rule{DefaultRule, {Digits: 7}, {Digits: 8, Separator: ","}, {Digits: 6, Separator: ";"}} {
		if err := r.Validate(); err != nil {
			t.Errorf("%+v: unexpected error %v", r, err)
		}
	}
	for _, r := range []Rule{{}, {Digits: 5}, {Digits: 9}, {Digits: 6, Separator: "ab"}, {Digits: 6, Separator: "x"}} {
		if err := r.Validate(); err == nil {
			t.Errorf("%+v: want an error", r)
		}
	}
}

// FuzzSplit checks the invariants of the split for any input: the parts
// always put back together into the submitted secret, and a code is always
// exactly the configured number of ASCII digits or a recovery code.
func FuzzSplit(f *testing.F) {
	for _, s := range []string{"classmate557831", "a;123456", "123456", "", ";", "x;y;000000", "pässwörd99999999"} {
		f.Add(s, uint8(6), false)
		f.Add(s, uint8(8), true)
	}
	f.Fuzz(func(t *testing.T, secret string, digits uint8, sep bool) {
		r := Rule{Digits: 6 + int(digits%3)}
		if sep {
			r.Separator = ";"
		}
		p, err := Split(secret, r)
		if secret == "" {
			if !errors.Is(err, ErrEmpty) {
				t.Fatalf("empty secret: err = %v", err)
			}
			return
		}
		if err != nil {
			t.Fatalf("Split(%q): %v", secret, err)
		}
		if !p.HasCode {
			if p.Password != secret || p.Code != "" {
				t.Fatalf("no code, but parts %+v differ from %q", p, secret)
			}
			return
		}
		if (len(p.Code) != r.Digits || !allDigits(p.Code)) && !IsRecoveryCode(p.Code) {
			t.Fatalf("code %q is neither %d ASCII digits nor a recovery code", p.Code, r.Digits)
		}
		if joined := p.Password + r.Separator + p.Code; joined != secret {
			t.Fatalf("parts %+v join to %q, not %q", p, joined, secret)
		}
		if r.Separator != "" && strings.Contains(p.Code, r.Separator) {
			t.Fatalf("code %q contains the separator", p.Code)
		}
		if utf8.ValidString(secret) && !utf8.ValidString(p.Password) {
			t.Fatalf("valid UTF-8 %q split into invalid password %q", secret, p.Password)
		}
	})
}
