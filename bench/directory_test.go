package bench

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	goldap "github.com/go-ldap/ldap/v3"

	"github.com/stepgate/stepgate/internal/config"
	"github.com/stepgate/stepgate/internal/loadgen"
	"github.com/stepgate/stepgate/internal/testenv/slapd"
	"github.com/stepgate/stepgate/internal/verifier/verifiertest"
)

// maxDirectoryUsers bounds the accounts of the directory measurement:
// binding each row to its entry is one durable write per account.
const maxDirectoryUsers = 2000

// directoryMeasurements: first sign-ins (password + fresh code) of
// directory-backed accounts, through the LDAP proxy in front of slapd
// (a lookup as the lookup account, uncached, reading entryUUID; the
// row found by identity; the upstream bind; the bound entry's name),
// against the same accounts kept locally with {SSHA} hashes. Both sides
// are stepgate, with the same load generator.
func (b *ldapBench) directoryMeasurements(t *testing.T) []measurement {
	users := b.users[:min(len(b.users), maxDirectoryUsers)]
	pwFile := filepath.Join(t.TempDir(), "lookup.pw")
	if err := os.WriteFile(pwFile, []byte(slapd.RootPW+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	dg := startStepgate(t, users, func(u benchUser) string { return u.ssha }, nil, func(c *config.LDAP) {
		c.Upstream = &config.LDAPUpstream{URLs: []string{b.plain.URL()}, UserAttribute: "uid", Timeout: config.Duration(10 * time.Second),
			IDAttribute: "entryUUID", LookupDN: slapd.RootDN, LookupPasswordFile: pwFile,
			// Every first sign-in looks its person up: the cache would
			// only help the repetitions.
			LookupCache: config.Duration(time.Nanosecond)}
	}, verifiertest.NewClock(time.Now()))
	bindRows(t, dg, b.plain.URL(), users)
	local := startStepgate(t, users, func(u benchUser) string { return u.ssha }, nil, nil, verifiertest.NewClock(time.Now()))
	first := func(name string, sg *stepgate) side {
		return side{name: name, run: func(t *testing.T, conns, rep int) (loadgen.Result, error) {
			sg.env.Clock.Advance(90 * time.Second) // a fresh step for every account
			now := sg.env.Clock.Now()
			return b.run(conns, len(users), bindWorkers(sg.url(), func(_, n int) (string, string) {
				return users[n].dn(), users[n].password + users[n].code(now)
			}))
		}}
	}
	return []measurement{{id: "first-sign-in-directory", unit: "binds/s",
		title:    "First sign-in: directory-backed account (proxy) vs local account ({SSHA})",
		stepgate: first("stepgate proxy, directory-backed", dg), ref: first("stepgate, local {SSHA}", local),
		note: "directory-backed: an uncached lookup as the lookup account (entry, entryUUID), the row by identity, the code, " +
			"the upstream bind, the bound entry's name; local: the code and an {SSHA} check; both durable"}}
}

// bindRows binds each imported row to its slapd entry's entryUUID, as
// the first sign-in through the proxy would.
func bindRows(t *testing.T, sg *stepgate, url string, users []benchUser) {
	t.Helper()
	c, err := goldap.DialURL(url)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	res, err := c.Search(goldap.NewSearchRequest("ou=people,"+base, goldap.ScopeSingleLevel, goldap.NeverDerefAliases, 0, 0, false,
		"(uid=*)", []string{"uid", "entryUUID"}, nil))
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]string{}
	for _, e := range res.Entries {
		ids[e.GetAttributeValue("uid")] = e.GetAttributeValue("entryUUID")
	}
	ctx := context.Background()
	for _, u := range users {
		row, err := sg.env.Store.User(ctx, u.name)
		if err != nil {
			t.Fatal(err)
		}
		if err := sg.env.Store.FollowDirectory(ctx, row.ID, u.name, ids[u.name]); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := sg.env.Verifier.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
}
