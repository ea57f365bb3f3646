package server

import (
	"fmt"
	"log/slog"
	"net/netip"

	"github.com/stepgate/stepgate/internal/config"
	"github.com/stepgate/stepgate/internal/listener"
	"github.com/stepgate/stepgate/internal/password"
)

// hashLimiter bounds the password hashes of one process: every front
// end's sign-ins share the machine's CPUs and memory.
func hashLimiter(l config.Limits, log *slog.Logger) *password.Limiter {
	h := password.NewLimiter(password.Limits{Concurrent: l.PasswordHashes, Memory: int64(l.HashMemory), Wait: l.HashWait.D()})
	log.Debug("password hashing bounded", "at_once", h.Slots(), "wait", l.HashWait.D().String())
	return h
}

// addrLimits is the per-address connection cap the front ends share, so
// that an address's LDAP and IMAP connections count together. An
// application (lockout.applications) or a trusted IMAP front
// (imap.trusted_networks) stands for many users: it gets
// config.FrontMaxConnsPerAddress, unless a limits.address_exceptions
// entry covers it, which the administrator set on purpose.
func addrLimits(c *config.Config) (*listener.AddrLimits, error) {
	l := c.Limits
	var rules []listener.AddrRule
	for i, e := range l.AddressExceptions {
		ps, err := e.Prefixes()
		if err != nil {
			return nil, fmt.Errorf("limits.address_exceptions[%d].addresses: %w", i, err)
		}
		for _, p := range ps {
			rules = append(rules, listener.AddrRule{Prefix: p, Max: e.MaxConnsPerAddress})
		}
	}
	explicit := len(rules)
	covered := func(p netip.Prefix) bool {
		for _, r := range rules[:explicit] {
			if r.Prefix.Bits() <= p.Bits() && r.Prefix.Contains(p.Addr()) {
				return true
			}
		}
		return false
	}
	frontMax := max(config.FrontMaxConnsPerAddress, l.MaxConnsPerAddress)
	for _, list := range []struct {
		key   string
		addrs []string
	}{{"lockout.applications", c.Lockout.Applications}, {"imap.trusted_networks", c.IMAP.TrustedNetworks}} {
		ps, err := config.Prefixes(list.addrs)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", list.key, err)
		}
		for _, p := range ps {
			if !covered(p) {
				rules = append(rules, listener.AddrRule{Prefix: p, Max: frontMax})
			}
		}
	}
	return listener.NewAddrLimits(l.MaxConnsPerAddress, rules), nil
}
