package directory_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stepgate/stepgate/internal/directory"
	"github.com/stepgate/stepgate/internal/testenv/slapd"
	"github.com/stepgate/stepgate/internal/verifier"
)

const (
	lookupDN = "cn=lookup," + slapd.Suffix
	lookupPW = "lookup-secret"
)

// lookupLDIF is stepgate's read-only account in the directory.
var lookupLDIF = "dn: " + lookupDN + "\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\ncn: lookup\nuserPassword: " + lookupPW + "\n\n"

func TestLookupAgainstSlapd(t *testing.T) {
	alice := slapd.Person{UID: "alice", Mail: "alice@example.org", Password: "pw"}
	bob := slapd.Person{UID: "bob", Password: "pw"}
	sd := slapd.Start(t, slapd.Options{MemberOf: true, RestrictReads: true, LDIF: lookupLDIF + alice.LDIF() + bob.LDIF() +
		"dn: cn=staff,ou=groups," + slapd.Suffix + "\nobjectClass: posixGroup\ncn: staff\ngidNumber: 100\nmemberUid: bob\n\n" +
		"dn: cn=ops,ou=groups," + slapd.Suffix + "\nobjectClass: groupOfUniqueNames\ncn: ops\nuniqueMember: " + bob.DN() + "\n\n"})
	sd.Modify(slapd.Group{CN: "2sv", Members: []string{alice.DN()}}.LDIF())
	ctx := context.Background()
	newDir := func(c directory.Config) *directory.Directory {
		c.URLs, c.BaseDN, c.Timeout, c.IDAttribute = []string{sd.URL()}, slapd.Suffix, 5*time.Second, "entryUUID"
		d, err := directory.New(c)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.Close() })
		return d
	}

	// Anonymous lookups see nothing in a directory that refuses them.
	anon := newDir(directory.Config{Groups: directory.GroupsMemberOf})
	if e, err := anon.Lookup(ctx, "alice"); e != nil || err != nil {
		t.Fatalf("anonymous lookup under restricted reads = %+v, %v", e, err)
	}

	d := newDir(directory.Config{LookupDN: lookupDN, LookupPassword: lookupPW, Groups: directory.GroupsMemberOf})
	var id string
	for _, name := range []string{"alice", "ALICE", "alice@example.org", alice.DN()} {
		e, err := d.Lookup(ctx, name)
		if err != nil || e == nil || e.Name != "alice" || e.DN != alice.DN() || e.ID == "" ||
			!slices.Equal(e.Groups, []string{"cn=2sv,ou=groups,dc=example,dc=org"}) {
			t.Fatalf("lookup %q = %+v, %v", name, e, err)
		}
		if id != "" && e.ID != id {
			t.Fatalf("lookup %q: identity %s, earlier %s", name, e.ID, id)
		}
		id = e.ID
	}
	if e, err := d.Lookup(ctx, "nobody"); e != nil || err != nil {
		t.Fatalf("absent name = %+v, %v", e, err)
	}

	// The group search finds groupOfNames, groupOfUniqueNames and
	// posixGroup memberships.
	s := newDir(directory.Config{LookupDN: lookupDN, LookupPassword: lookupPW, Groups: directory.GroupsSearch})
	e, err := s.Lookup(ctx, "bob")
	if err != nil || e == nil || !slices.Equal(e.Groups, []string{"cn=staff,ou=groups,dc=example,dc=org", "cn=ops,ou=groups,dc=example,dc=org"}) &&
		!slices.Equal(e.Groups, []string{"cn=ops,ou=groups,dc=example,dc=org", "cn=staff,ou=groups,dc=example,dc=org"}) {
		t.Fatalf("group search for bob = %+v, %v", e, err)
	}
	if e, err := s.Lookup(ctx, "alice"); err != nil || e == nil || len(e.Groups) != 1 {
		t.Fatalf("group search for alice = %+v, %v", e, err)
	}

	// A wrong lookup password is the service's fault: unavailable.
	bad := newDir(directory.Config{LookupDN: lookupDN, LookupPassword: "wrong"})
	if _, err := bad.Lookup(ctx, "alice"); !errors.Is(err, verifier.ErrUnavailable) {
		t.Fatalf("lookup with a wrong lookup password: %v", err)
	}
	// Concurrent lookups share the connections; a restarted directory's
	// closed connections are replaced.
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := 0; i < 40; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if e, err := s.Lookup(ctx, []string{"alice", "bob"}[i%2]); err != nil || e == nil {
				errs <- fmt.Errorf("concurrent lookup: %+v, %v", e, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	sd.Stop()
	sd.Start()
	s.Forget()
	if e2, err := s.Lookup(ctx, "alice"); err != nil || e2 == nil || e2.ID != id {
		t.Fatalf("lookup after a restart = %+v, %v", e2, err)
	}
	// A directory that is down: unavailable, not absent.
	sd.Stop()
	cold := newDir(directory.Config{LookupDN: lookupDN, LookupPassword: lookupPW})
	if _, err := cold.Lookup(ctx, "alice"); !errors.Is(err, verifier.ErrUnavailable) {
		t.Fatalf("lookup with the directory down: %v", err)
	}
}

func TestNormalizeDN(t *testing.T) {
	for _, s := range []string{"CN=2sv, OU=Groups,dc=Example,DC=org", "cn=2SV,ou=groups,dc=example,dc=org"} {
		if n, err := directory.NormalizeDN(s); err != nil || n != "cn=2sv,ou=groups,dc=example,dc=org" {
			t.Fatalf("NormalizeDN(%q) = %q, %v", s, n, err)
		}
	}
	if _, err := directory.NormalizeDN("not a dn"); err == nil {
		t.Fatal("NormalizeDN took a non-DN")
	}
}
