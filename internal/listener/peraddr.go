package listener

import (
	"net"
	"net/netip"
	"sync"
)

// AddrRule gives the addresses in Prefix their own per-address cap: an
// application in front of stepgate (webmail, a proxy) that brings many
// users through one address.
type AddrRule struct {
	Prefix netip.Prefix
	Max    int
}

// AddrLimits caps the connections open from one client address, across
// every Set that shares it, so that one address cannot take all of a
// front end's connections and lock everyone else out.
type AddrLimits struct {
	def   int
	rules []AddrRule

	mu   sync.Mutex
	open map[netip.Addr]int
}

// NewAddrLimits caps each address at def open connections (0: no cap),
// except where the most specific rule containing it says otherwise.
func NewAddrLimits(def int, rules []AddrRule) *AddrLimits {
	rs := make([]AddrRule, len(rules))
	for i, r := range rules {
		rs[i] = AddrRule{Prefix: r.Prefix.Masked(), Max: r.Max}
	}
	return &AddrLimits{def: def, rules: rs, open: map[netip.Addr]int{}}
}

// key is what a connection counts against: the address, or for IPv6 its
// /64, since one host is commonly handed a whole /64.
func key(remote net.Addr) (netip.Addr, bool) {
	ap, err := netip.ParseAddrPort(remote.String())
	if err != nil {
		return netip.Addr{}, false
	}
	a := ap.Addr().Unmap().WithZone("")
	if a.Is6() {
		p, _ := a.Prefix(64)
		a = p.Addr()
	}
	return a, true
}

// Max is the cap for a (0: none).
func (l *AddrLimits) Max(a netip.Addr) int {
	best, max := -1, l.def
	for _, r := range l.rules {
		if r.Prefix.Contains(a) && r.Prefix.Bits() > best {
			best, max = r.Prefix.Bits(), r.Max
		}
	}
	return max
}

// acquire counts a connection from remote; false (with the cap) when the
// address is at its cap. A connection whose address cannot be read is
// left to the global cap.
func (l *AddrLimits) acquire(remote net.Addr) (release func(), max int, ok bool) {
	a, ok := key(remote)
	if !ok {
		return func() {}, 0, true
	}
	max = l.Max(a)
	l.mu.Lock()
	defer l.mu.Unlock()
	if max > 0 && l.open[a] >= max {
		return nil, max, false
	}
	l.open[a]++
	return func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.open[a]--; l.open[a] <= 0 {
			delete(l.open, a)
		}
	}, max, true
}
