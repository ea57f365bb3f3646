package username

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"golang.org/x/text/secure/precis"
)

func TestCanonical(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"alice", "alice"},
		{"Alice", "alice"},
		{"ALICE", "alice"},
		{"ａｌｉｃｅ", "alice"},    // full-width letters
		{"ＡＬＩＣＥ", "alice"},    // full-width capitals
		{"\u212Aate", "kate"}, // KELVIN SIGN
		{"a.b_c-d", "a.b_c-d"},
		{"alice@example.org", "alice@example.org"},
		{"ÅSA", "åsa"},
		{"A\u030Asa", "åsa"}, // combining ring: NFC
	} {
		got, err := Canonical(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("Canonical(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestCanonicalRejects(t *testing.T) {
	for _, in := range []string{
		"", "alice ", " alice", "al ice", "alice\t", "alice\x00", "alice\n",
		"\u00a0alice", "alice\u200b", "\xff", strings.Repeat("a", MaxBytes+1),
	} {
		if got, err := Canonical(in); !errors.Is(err, ErrInvalid) {
			t.Errorf("Canonical(%q) = %q, %v; want ErrInvalid", in, got, err)
		} else if strings.Contains(err.Error(), in) && in != "" {
			t.Errorf("Canonical(%q): error %q quotes the name", in, err)
		}
	}
}

// TestASCIIFastPath: for printable ASCII the short cut and the profile
// agree, byte for byte, on every character and on mixed names.
func TestASCIIFastPath(t *testing.T) {
	var all []byte
	for c := byte('!'); c <= '~'; c++ {
		all = append(all, c)
		one := string([]byte{'a', c, 'Z'})
		fast, _ := asciiCanonical(one)
		slow, err := precis.UsernameCaseMapped.String(one)
		if err != nil || fast != slow {
			t.Errorf("%q: fast %q, profile %q (%v)", one, fast, slow, err)
		}
	}
	fast, _ := asciiCanonical(string(all))
	if slow, err := precis.UsernameCaseMapped.String(string(all)); err != nil || fast != slow {
		t.Errorf("all printable ASCII: fast %q, profile %q (%v)", fast, slow, err)
	}
}

// FuzzCanonical checks the properties every caller relies on: the result
// is stable, valid UTF-8, never longer than the bound, and holds no
// space or control character.
func FuzzCanonical(f *testing.F) {
	for _, s := range []string{"alice", "ＡＬＩＣＥ", "\u212Aate", "alice ", "uid=alice", "a@b", "İ", "ß", "ǅ"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out, err := Canonical(in)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			return
		}
		if !utf8.ValidString(out) || out == "" {
			t.Fatalf("Canonical(%q) = %q: empty or not UTF-8", in, out)
		}
		if c, ok := asciiCanonical(in); ok {
			if slow, err := precis.UsernameCaseMapped.String(in); err != nil || slow != c {
				t.Fatalf("fast path %q, profile %q (%v) for %q", c, slow, err, in)
			}
		}
		again, err := Canonical(out)
		if err != nil || again != out {
			t.Fatalf("Canonical not idempotent: %q -> %q -> %q, %v", in, out, again, err)
		}
		for _, r := range out {
			if r <= ' ' || r == 0x7f {
				t.Fatalf("Canonical(%q) = %q holds a space or control character", in, out)
			}
		}
	})
}
