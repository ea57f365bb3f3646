package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stepgate/stepgate/internal/loadgen"
	"github.com/stepgate/stepgate/internal/testenv/postgres"
	"github.com/stepgate/stepgate/internal/verifier"
	"github.com/stepgate/stepgate/internal/verifier/verifiertest"
)

// storeIDs are the ids of storeMeasurements' rows, and "revoke-across"
// for the revoke time, for -bench-only.
var storeIDs = []string{"first-sign-in-postgres", "session-hit-postgres", "first-sign-in-two-instances", "session-hit-two-instances", "revoke-across"}

// storeMeasurements compare the store in PostgreSQL (a local cluster,
// fsync on as in production, over TCP on loopback) with the SQLite store,
// and two instances on one PostgreSQL with one, the same accounts and the
// same load generator: first sign-ins, which write the used step and the
// session in one group commit, and session hits, which read memory.
func (b *ldapBench) storeMeasurements(t *testing.T) (ms []measurement, extra []string) {
	if _, err := postgres.Bin(); err != nil {
		skippedParts = append(skippedParts, "PostgreSQL store: "+err.Error())
		return nil, nil
	}
	pg := postgres.Start(t, postgres.Options{})
	t.Logf("starting two stepgate instances on one PostgreSQL with %d accounts", len(b.users))
	one := startStepgateOn(t, pg.NewDatabase(t), b.users, func(u benchUser) string { return u.ssha }, nil, nil, verifiertest.NewClock(time.Now()))
	two := []*stepgate{one, joinStepgate(t, one)}
	samples := 60
	if b.p.name == "smoke" {
		samples = 8
	}
	if want("revoke-across") {
		extra = append(extra, revokeAcross(t, two[0], two[1], b.users, samples))
	}
	return []measurement{
		{id: "first-sign-in-postgres", title: "First sign-in: the store in PostgreSQL against SQLite", unit: "binds/s",
			stepgate: b.firstSignIns("stepgate (PostgreSQL)", one), ref: b.firstSignIns("stepgate (SQLite)", b.sg),
			note: "one instance each; PostgreSQL on loopback with fsync on, the replay guard group-committed on both"},
		{id: "session-hit-postgres", title: "Session hit: the store in PostgreSQL against SQLite", unit: "binds/s",
			stepgate: b.sessionHits("stepgate (PostgreSQL)", one), ref: b.sessionHits("stepgate (SQLite)", b.sg),
			note: "a hit reads the instance's memory; the store is read only on a miss"},
		{id: "first-sign-in-two-instances", title: "First sign-in: two instances on one PostgreSQL against one", unit: "binds/s",
			stepgate: b.firstSignInsOn("stepgate x2 (PostgreSQL)", two), ref: b.firstSignInsOn("stepgate x1 (PostgreSQL)", two[:1]),
			note: "connections alternate between the instances, as a load balancer without stickiness spreads them; both share this machine's 2 cores"},
		{id: "session-hit-two-instances", title: "Session hit: two instances on one PostgreSQL against one", unit: "binds/s",
			stepgate: b.sessionHitsOn("stepgate x2 (PostgreSQL)", two), ref: b.sessionHitsOn("stepgate x1 (PostgreSQL)", two[:1]),
			note: "sessions made on the first instance; the second finds them in the store on its first miss"},
	}, extra
}

// revokeAcross times a revoke on instance b until a's session of it is
// closed (its connections cut, its string refused): a polls the change
// log every 250 ms as serve does, and the revokes come at random moments
// of that period, as an administrator's would.
func revokeAcross(t *testing.T, a, b *stepgate, users []benchUser, samples int) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				a.env.Verifier.Refresh(ctx)
			}
		}
	}()
	var took []time.Duration
	for i := range samples {
		a.env.Clock.Advance(90 * time.Second)
		u := users[len(users)-1-i%len(users)]
		s := u.password + u.code(a.env.Clock.Now())
		d := a.env.Verifier.Verify(ctx, verifier.Attempt{Protocol: "ldap", User: u.name, Secret: s, Remote: "127.0.0.1"})
		if !d.Allowed() {
			t.Fatalf("revoke across instances: signing %s in: %s", u.name, d.Reason)
		}
		time.Sleep(rand.N(250 * time.Millisecond))
		start := time.Now()
		if found, err := b.env.Sessions.RevokeEverywhere(ctx, d.Session.SessionID()); err != nil || !found {
			t.Fatalf("revoke across instances: %v %v", found, err)
		}
		select {
		case <-d.Session.Revoked():
		case <-time.After(10 * time.Second):
			t.Fatal("revoke across instances: the session on the other instance still open after 10 s")
		}
		took = append(took, time.Since(start))
	}
	slices.Sort(took)
	line := fmt.Sprintf("Revoke on one instance to the session closed on the other (PostgreSQL, %d revokes at random moments of the 250 ms poll): median %d ms, p99 %d ms",
		samples, took[len(took)/2].Milliseconds(), took[len(took)*99/100].Milliseconds())
	t.Log(line)
	return line
}

// firstSignInsOn is firstSignIns with connection i on instance i mod n
// (the instances share one clock).
func (b *ldapBench) firstSignInsOn(name string, sgs []*stepgate) side {
	users := b.users
	return side{name: name, run: func(t *testing.T, conns, rep int) (loadgen.Result, error) {
		sgs[0].env.Clock.Advance(90 * time.Second)
		now := sgs[0].env.Clock.Now()
		return b.run(conns, len(users), spreadWorkers(sgs, func(_, n int) (string, string) {
			return users[n].dn(), users[n].password + users[n].code(now)
		}))
	}}
}

// sessionHits is a side of legacy reconnects on sg: one stored string
// per connection, signed in on sg before the first run.
func (b *ldapBench) sessionHits(name string, sg *stepgate) side {
	return b.sessionHitsOn(name, []*stepgate{sg})
}

// sessionHitsOn spreads the reconnects of sessionHits over sgs; the
// sessions are made on the first.
func (b *ldapBench) sessionHitsOn(name string, sgs []*stepgate) side {
	var once sync.Once
	var stored []string
	var setup error
	return side{name: name, run: func(t *testing.T, conns, rep int) (loadgen.Result, error) {
		once.Do(func() { stored, setup = b.signIn(sgs[0], 64) })
		if setup != nil {
			return loadgen.Result{}, setup
		}
		return b.run(conns, 0, spreadWorkers(sgs, func(w, _ int) (string, string) { return b.users[w].dn(), stored[w] }))
	}}
}

// signIn signs the first n accounts in on sg with a fresh code each and
// returns their strings.
func (b *ldapBench) signIn(sg *stepgate, n int) ([]string, error) {
	sg.env.Clock.Advance(90 * time.Second)
	now := sg.env.Clock.Now()
	var out []string
	for i := 0; i < n && i < len(b.users); i++ {
		u := b.users[i]
		s := u.password + u.code(now)
		d := sg.env.Verifier.Verify(context.Background(), verifier.Attempt{Protocol: "ldap", User: u.name, Secret: s, Remote: "127.0.0.1"})
		if !d.Allowed() {
			return nil, fmt.Errorf("setting up sessions: %s", d.Reason)
		}
		out = append(out, s)
	}
	return out, nil
}

// spreadWorkers is bindWorkers with worker i on sgs[i mod len(sgs)].
func spreadWorkers(sgs []*stepgate, pick func(worker, n int) (dn, pw string)) func(i int) (loadgen.Worker, error) {
	return func(i int) (loadgen.Worker, error) {
		return bindWorkers(sgs[i%len(sgs)].url(), pick)(i)
	}
}
