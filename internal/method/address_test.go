package method

import (
	"strings"
	"testing"
)

func TestParsePhone(t *testing.T) {
	for _, c := range []struct{ in, region, want string }{
		{"+44 7911 123456", "", "+447911123456"},
		{"+1 (415) 555-0132", "", "+14155550132"},
		{"0044 7911 123456", "GB", "+447911123456"},
		{"07911 123456", "GB", "+447911123456"},
	} {
		got, err := ParsePhone(c.in, c.region)
		if err != nil || got != c.want {
			t.Errorf("ParsePhone(%q, %q) = %q, %v; want %q", c.in, c.region, got, err, c.want)
		}
	}
	for _, c := range []struct{ in, region, why string }{
		{"07911 123456", "", "no country code"},
		{"+44 12", "", "not a valid number"},
		{"call me", "", "no country code"},
		{"+999 1234567", "", "not a"},
		{"", "", "empty"},
	} {
		_, err := ParsePhone(c.in, c.region)
		if err == nil || !strings.Contains(err.Error(), c.why) || !strings.Contains(err.Error(), "+44 7911 123456") {
			t.Errorf("ParsePhone(%q) error = %v; want one saying %q and showing the right form", c.in, err, c.why)
		}
	}
	if !ValidRegion("gb") || ValidRegion("XX") {
		t.Fatal("ValidRegion")
	}
}

func TestParseEmail(t *testing.T) {
	if got, err := ParseEmail(" Alice@Example.ORG "); err != nil || got != "Alice@example.org" {
		t.Fatalf("ParseEmail = %q, %v", got, err)
	}
	for _, bad := range []string{"Alice <alice@example.org>", "alice", "a@b@c", ""} {
		if _, err := ParseEmail(bad); err == nil {
			t.Errorf("ParseEmail(%q) accepted", bad)
		}
	}
}
