package server

import (
	"net/netip"
	"testing"

	"github.com/stepgate/stepgate/internal/config"
)

// TestFrontsGetALargerConnectionCap: an address in lockout.applications
// or imap.trusted_networks gets config.FrontMaxConnsPerAddress, unless a
// limits.address_exceptions entry covers it; everyone else keeps the
// default.
func TestFrontsGetALargerConnectionCap(t *testing.T) {
	c := config.Default()
	c.Lockout.Applications = []string{"127.0.0.1", "10.1.2.3"}
	c.IMAP.TrustedNetworks = []string{"192.0.2.0/24"}
	c.Limits.AddressExceptions = []config.AddressException{{Addresses: []string{"10.0.0.0/8"}, MaxConnsPerAddress: 5000}}
	l, err := addrLimits(c)
	if err != nil {
		t.Fatal(err)
	}
	for addr, want := range map[string]int{
		"127.0.0.1": config.FrontMaxConnsPerAddress, "192.0.2.9": config.FrontMaxConnsPerAddress,
		"10.1.2.3": 5000, "10.9.9.9": 5000, "127.0.0.2": 64, "198.51.100.1": 64,
	} {
		if got := l.Max(netip.MustParseAddr(addr)); got != want {
			t.Errorf("cap of %s = %d, want %d", addr, got, want)
		}
	}
}
