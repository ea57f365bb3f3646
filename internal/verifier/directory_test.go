package verifier_test

import (
	"context"
	"net/netip"
	"sync"
	"testing"

	"github.com/stepgate/stepgate/internal/store"
	"github.com/stepgate/stepgate/internal/verifier"
)

// fakeDirectory answers lookups from a map; slapd (protocols/ldap,
// cmd/stepgate) shows the real thing. This one shows what a real
// directory makes awkward: a departed person's name given to a new one,
// a directory down at lookup time, and every combination of the rules.
type fakeDirectory struct {
	mu      sync.Mutex
	entries map[string]*verifier.DirectoryEntry
	down    bool
}

func (f *fakeDirectory) Lookup(_ context.Context, name string) (*verifier.DirectoryEntry, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return nil, verifier.ErrUnavailable
	}
	e := f.entries[name]
	if e == nil {
		return nil, nil
	}
	c := *e
	return &c, nil
}

const groupDN = "cn=2sv,ou=groups,dc=example,dc=org"

func TestDirectoryRules(t *testing.T) {
	dir := &fakeDirectory{entries: map[string]*verifier.DirectoryEntry{
		"carol": {DN: "uid=carol", Name: "carol", ID: "id-carol", Groups: []string{groupDN}},
		"dave":  {DN: "uid=dave", Name: "dave", ID: "id-dave"},
	}}
	e := newEnv(t, func(c *verifier.Config) {
		c.Policy = verifier.PolicyDeny
		c.RequireGroups = []string{groupDN}
		c.ExemptNetworks = verifier.Networks{netip.MustParsePrefix("198.51.100.0/24")}
		c.Directory = dir
	})
	up := &upstream{pw: "pw"}
	at := func(name, secret, remote string, resolve bool) verifier.Attempt {
		a := attempt(name, secret)
		a.Remote, a.Password = remote, up
		if resolve {
			a.Directory = dir
		}
		return a
	}
	const office, printers = "192.0.2.10", "198.51.100.7"

	// Not enrolled, not a member: deny by policy, but the password alone
	// from an exempt network, with its own reason and no session.
	want(t, verify(e, at("dave", "pw", office, true)), verifier.Deny, verifier.ReasonNotEnrolled)
	d := verify(e, at("dave", "pw", printers, true))
	want(t, d, verifier.Allow, verifier.ReasonExemptNetwork)
	if d.Session != nil {
		t.Fatal("an exempt sign-in opened a session (it would let the string in from anywhere)")
	}
	want(t, verify(e, at("dave", "pw", office, true)), verifier.Deny, verifier.ReasonNotEnrolled)
	// A member of the required group: never the password alone, not
	// even from an exempt network.
	want(t, verify(e, at("carol", "pw", printers, true)), verifier.Deny, verifier.ReasonNotEnrolled)
	// The same rule for an attempt that brings no directory of its own
	// (IMAP): the server's directory names the groups.
	want(t, verify(e, at("carol", "pw", printers, false)), verifier.Deny, verifier.ReasonNotEnrolled)
	want(t, verify(e, at("dave", "pw", printers, false)), verifier.Allow, verifier.ReasonExemptNetwork)
	// Enrolled: a code always, exempt network or not.
	dave := e.AddEnrolled(t, "dave", "not-used")
	want(t, verify(e, at("dave", "pw", printers, true)), verifier.Deny, verifier.ReasonNoCode)
	want(t, verify(e, at("dave", "pw"+dave.Code(t), printers, true)), verifier.Allow, verifier.ReasonCode)
	if u, err := e.Store.User(context.Background(), "dave"); err != nil || u.ExternalID != "id-dave" {
		t.Fatalf("the row made by name was not bound to its entry: %+v, %v", u, err)
	}

	// A directory that cannot be asked: unavailable, not unknown.
	dir.mu.Lock()
	dir.down = true
	dir.mu.Unlock()
	want(t, verify(e, at("dave", "pw"+dave.NextCode(t), office, true)), verifier.Deny, verifier.ReasonUnavailable)
	dir.mu.Lock()
	dir.down = false
	// The directory gives dave's name to a new person (another identity):
	// the old row's authenticators must not let the newcomer in, nor
	// must the newcomer be taken for "not enrolled" under the old row.
	dir.entries["dave"] = &verifier.DirectoryEntry{DN: "uid=dave", Name: "dave", ID: "id-new-dave"}
	dir.mu.Unlock()
	calls := up.calls.Load()
	want(t, verify(e, at("dave", "pw"+dave.NextCode(t), office, true)), verifier.Deny, verifier.ReasonIdentity)
	if up.calls.Load() != calls {
		t.Fatal("a refused identity reached the upstream")
	}
	// Absent from the directory: unknown, though the store has a row.
	dir.mu.Lock()
	delete(dir.entries, "dave")
	dir.mu.Unlock()
	want(t, verify(e, at("dave", "pw2"+dave.NextCode(t), office, true)), verifier.Deny, verifier.ReasonUnknownUser)
}

// TestUpstreamAccountWithoutUpstream: the row of a mail account has no
// hash; at a front end that checks passwords locally it fails like an
// unknown name, not with an error.
func TestUpstreamAccountWithoutUpstream(t *testing.T) {
	e := newEnv(t, func(c *verifier.Config) { c.Policy = verifier.PolicyAllow })
	if _, err := e.Store.AddExternalUser(context.Background(), "mia", store.SourceMail, ""); err != nil {
		t.Fatal(err)
	}
	want(t, verify(e, attempt("mia", "mia-pass")), verifier.Deny, verifier.ReasonNoLocalPassword)
}
