package ldap

import (
	"github.com/stepgate/stepgate/internal/verifier"
)

// PortalAttempt makes a sign-in made elsewhere (the portal) check its
// password against the upstream directory, as a proxied bind does: the
// verifier asks the directory which entry the name stands for, and the
// password check binds as that entry on a connection of its own, which
// done closes. ok is false when the front end serves its own directory
// (the store's hash is the password then).
func (s *Server) PortalAttempt(a *verifier.Attempt) (done func(), ok bool) {
	if s.proxy == nil {
		return func() {}, false
	}
	chk := &upstreamBind{c: &conn{s: s}}
	a.Password, a.Directory = chk, s.proxy.dir
	a.Resolved = func(e *verifier.DirectoryEntry) { chk.dn = e.DN }
	return chk.drop, true
}
