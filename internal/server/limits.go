package server

import (
	"fmt"
	"log/slog"

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
// that an address's LDAP and IMAP connections count together.
func addrLimits(l config.Limits) (*listener.AddrLimits, error) {
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
	return listener.NewAddrLimits(l.MaxConnsPerAddress, rules), nil
}
