package verifier

import "net/netip"

// Networks is a list of addresses and networks that a remote address is
// matched against: a handful of entries from the config, so a scan is
// all it needs.
type Networks []netip.Prefix

// Contains reports whether remote (an address without a port, as in
// Attempt.Remote) is in one of the networks. A remote that is not an
// address is in none.
func (n Networks) Contains(remote string) bool {
	if len(n) == 0 {
		return false
	}
	a, err := netip.ParseAddr(remote)
	if err != nil {
		return false
	}
	a = a.Unmap().WithZone("")
	for _, p := range n {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
