package ldap

import (
	"context"
	"fmt"

	"github.com/stepgate/stepgate/internal/verifier"
)

// PasswordChecker is the password check of a sign-in made elsewhere (the
// portal) against the upstream directory: the bind a proxied LDAP bind
// makes, on a connection of its own that done closes. ok is false when
// the front end serves its own directory (the store's hash is the
// password then).
func (s *Server) PasswordChecker(ctx context.Context, name string) (chk verifier.PasswordChecker, done func(), ok bool) {
	if s.proxy == nil {
		return nil, func() {}, false
	}
	c := &conn{s: s}
	_, dn, err := c.resolveUpstream(ctx, name)
	if err != nil {
		s.log.Warn("upstream directory unavailable", "err", err)
		return unavailable{err}, func() {}, true
	}
	b := &upstreamBind{c: c, dn: dn}
	return b, b.drop, true
}

// unavailable is a password check whose directory could not be reached.
type unavailable struct{ err error }

func (u unavailable) CheckPassword(context.Context, string, string) error {
	return fmt.Errorf("%w: %v", verifier.ErrUnavailable, u.err)
}
