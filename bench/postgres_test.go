package bench

import (
	"testing"
	"time"

	"github.com/stepgate/stepgate/internal/testenv/postgres"
	"github.com/stepgate/stepgate/internal/verifier/verifiertest"
)

// storeMeasurements compares first sign-ins with the store in PostgreSQL
// (a local cluster, fsync on as in production, over TCP on loopback)
// against the SQLite store, the same accounts and the same load
// generator. Session hits do not touch the store, so they are not
// measured again.
func (b *ldapBench) storeMeasurements(t *testing.T) []measurement {
	if _, err := postgres.Bin(); err != nil {
		skippedParts = append(skippedParts, "PostgreSQL store: "+err.Error())
		return nil
	}
	pg := postgres.Start(t, postgres.Options{})
	t.Logf("starting stepgate on PostgreSQL with %d accounts", len(b.users))
	sg := startStepgateOn(t, pg.NewDatabase(t), b.users, func(u benchUser) string { return u.ssha }, nil, nil, verifiertest.NewClock(time.Now()))
	return []measurement{{id: "first-sign-in-postgres", title: "First sign-in: the store in PostgreSQL against SQLite", unit: "binds/s",
		stepgate: b.firstSignIns("stepgate (PostgreSQL)", sg), ref: b.firstSignIns("stepgate (SQLite)", b.sg),
		note: "one instance each; PostgreSQL on loopback with fsync on, the replay guard group-committed on both"}}
}
