package ldap

import (
	"testing"
	"time"

	goldap "github.com/go-ldap/ldap/v3"

	"github.com/stepgate/stepgate/internal/password"
	"github.com/stepgate/stepgate/internal/store"
	"github.com/stepgate/stepgate/internal/testenv"
	"github.com/stepgate/stepgate/internal/verifier/verifiertest"
)

// TestFailurePathsTakeTheSameTime: over a real LDAP connection, the
// median bind time of an unknown user, a wrong password (with the right
// code), a wrong code and a password alone are within a factor of 1.5 of
// each other. Only the wrong password runs a password hash; the others
// must not be told apart by answering sooner. Statistical, not a speed
// target: each path is measured a few hundred times, interleaved, and only
// the medians are compared.
func TestFailurePathsTakeTheSameTime(t *testing.T) {
	if testing.Short() {
		t.Skip("statistical timing test; skipped with -short")
	}
	r := newRigWith(t, nil, nil, verifiertest.Options{SessionConfig: roomyLimits})
	// A hash that costs a few milliseconds, so that a path that skips it
	// would stand out.
	h, err := password.HashWith("classmate", password.Params{Memory: 2048, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32})
	if err != nil {
		t.Fatal(err)
	}
	alice := r.AddUser(t, "alice", "classmate", func(n *store.NewUser) { n.PasswordHash = h })
	r.Enroll(t, alice)

	c, err := goldap.DialURL(r.url())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	dn := "uid=alice,ou=people," + base
	paths := []struct {
		name   string
		dn, pw func() string
	}{
		{"unknown user", func() string { return "uid=nobody,ou=people," + base }, func() string { return "classmate" + alice.Code(t) }},
		{"wrong password", func() string { return dn }, func() string { return "classmatf" + alice.Code(t) }},
		{"wrong code", func() string { return dn }, func() string { return "classmate" + wrongCode(alice.Code(t)) }},
		{"password only", func() string { return dn }, func() string { return "classmate" }},
	}
	bind := func(i int) time.Duration {
		d, pw := paths[i].dn(), paths[i].pw()
		start := time.Now()
		err := c.Bind(d, pw)
		took := time.Since(start)
		if !goldap.IsErrorWithCode(err, goldap.LDAPResultInvalidCredentials) {
			t.Fatalf("%s: %v, want invalidCredentials", paths[i].name, err)
		}
		return took
	}
	for i := 0; i < 40; i++ { // warm up: the pacer learns what a hash costs here
		bind(i % len(paths))
	}
	const tries = 200
	times := make([][]time.Duration, len(paths))
	for n := 0; n < tries; n++ {
		for i := range paths {
			times[i] = append(times[i], bind(i))
		}
	}
	names := make([]string, len(paths))
	for i := range paths {
		names[i] = paths[i].name
	}
	testenv.SameMedians(t, names, times, 1.5)
}
