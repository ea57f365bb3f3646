package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stepgate/stepgate/internal/seal"
)

// legacySQLite builds a database at version the way stepgate migrated
// before schema_migrations existed: each migration and then PRAGMA
// user_version in one transaction, and nothing else. The files under
// migrations/sqlite are those that code ran, moved unchanged.
func legacySQLite(t *testing.T, path string, version int) {
	t.Helper()
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	db, err := openSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ms, err := migrations("sqlite")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms[:version] {
		tx, err := db.Begin()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(m.sql); err != nil {
			t.Fatalf("%s: %v", m.name, err)
		}
		if _, err := tx.Exec(fmt.Sprintf("PRAGMA user_version = %d", m.version)); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
	}
}

// assertRecorded checks that schema_migrations lists every migration once,
// in order, and that user_version follows it for older binaries.
func assertRecorded(t *testing.T, s *Store) {
	t.Helper()
	ctx := context.Background()
	ms, _ := migrations("sqlite")
	rows, err := s.db.QueryContext(ctx, `SELECT version, name FROM schema_migrations ORDER BY version`)
	if err != nil {
		t.Fatalf("schema_migrations: %v", err)
	}
	defer rows.Close()
	var got []string
	for rows.Next() {
		var v int
		var name string
		if err := rows.Scan(&v, &name); err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprintf("%d %s", v, name))
	}
	var want []string
	for _, m := range ms {
		want = append(want, fmt.Sprintf("%d %s", m.version, m.name))
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("schema_migrations = %q, want %q", got, want)
	}
	var uv int
	if err := s.db.QueryRowContext(ctx, `PRAGMA user_version`).Scan(&uv); err != nil || uv != len(ms) {
		t.Fatalf("user_version = %d, %v; want %d, for a stepgate from before schema_migrations", uv, err, len(ms))
	}
}

// TestLegacyVersionsUpgrade: a database that the old migration runner left
// at any version (user_version alone) opens, gets schema_migrations with
// the versions it had, and carries on from there.
func TestLegacyVersionsUpgrade(t *testing.T) {
	for v := 0; v <= LatestVersion(); v++ {
		t.Run(fmt.Sprintf("v%d", v), func(t *testing.T) {
			ctx := context.Background()
			dir := t.TempDir()
			legacySQLite(t, filepath.Join(dir, "stepgate.db"), v)
			s := openTest(t, dir)
			if got, err := s.Version(ctx); err != nil || got != LatestVersion() {
				t.Fatalf("version = %d, %v; want %d", got, err, LatestVersion())
			}
			assertRecorded(t, s)
			var backfilled int
			s.db.QueryRow(`SELECT COUNT(*) FROM schema_migrations WHERE applied_at = 0`).Scan(&backfilled)
			if backfilled != v {
				t.Fatalf("%d migrations recorded as from before the table, want %d: a migration ran twice or was skipped", backfilled, v)
			}
			if _, err := s.AddUser(ctx, NewUser{Name: "Erin", PasswordHash: "h", Groups: []string{"staff"}}); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestLegacyConcurrentUpgrade: the server and a CLI command opening an old
// database at the same time both get a migrated one, each migration
// recorded once.
func TestLegacyConcurrentUpgrade(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "stepgate.db")
	legacySQLite(t, path, 1)
	sealer, err := seal.LoadOrCreate(filepath.Join(dir, "sealing.key"))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	stores := make([]*Store, 4)
	errs := make([]error, len(stores))
	for i := range stores {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stores[i], errs[i] = Open(context.Background(), path, sealer, Options{})
		}()
	}
	wg.Wait()
	for i, s := range stores {
		if errs[i] != nil {
			t.Fatalf("open %d: %v", i, errs[i])
		}
		defer s.Close()
	}
	assertRecorded(t, stores[0])
}

// TestOpenDatabaseFromBeforeDialects opens testdata/v4, which the store as
// it was before schema_migrations wrote (PRAGMA user_version = 4), with
// the key it was sealed with: the accounts, their sealed secrets and the
// replay guard come through, and the database carries on.
func TestOpenDatabaseFromBeforeDialects(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	for _, f := range []string{"stepgate.db", "sealing.key"} {
		b, err := os.ReadFile(filepath.Join("testdata", "v4", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s := openTest(t, dir)
	assertRecorded(t, s)
	u, auths, err := s.Account(ctx, "erin")
	if err != nil || u.TwoStep != TwoStepActive || len(auths) != 1 || auths[0].Secret != "JBSWY3DPEHPK3PXP" || auths[0].LastStep != 101 {
		t.Fatalf("erin = %+v, %+v, %v", u, auths, err)
	}
	if err := s.ConsumeStep(ctx, auths[0].ID, 101); !errors.Is(err, ErrStepUsed) {
		t.Fatalf("step used before the upgrade: %v, want ErrStepUsed", err)
	}
	if err := s.ConsumeStep(ctx, auths[0].ID, 102); err != nil {
		t.Fatal(err)
	}
	if u, _ := s.User(ctx, "erin"); u == nil || strings.Join(u.Groups, ",") != "Staff" {
		t.Fatalf("erin's groups = %+v", u)
	}
	ms, err := s.Methods(ctx, u.ID)
	if err != nil || len(ms) != 1 || ms[0].Address != "erin@example.org" || !ms[0].Verified || !ms[0].Primary {
		t.Fatalf("erin's methods = %+v, %v", ms, err)
	}
	if n, _ := s.RecoveryCodesLeft(ctx, u.ID); n != 2 {
		t.Fatalf("recovery codes left = %d, want 2", n)
	}
	if svc, err := s.User(ctx, "svc"); err != nil || !svc.Service {
		t.Fatalf("svc = %+v, %v", svc, err)
	}
	gen, err := s.Generation(ctx)
	if err != nil || gen != 7 {
		t.Fatalf("generation = %d, %v; want 7 as the old store left it", gen, err)
	}
	if _, err := s.AddUser(ctx, NewUser{Name: "ERIN", PasswordHash: "h"}); !errors.Is(err, ErrExists) {
		t.Fatalf("duplicate of an old account: %v, want ErrExists", err)
	}
	f, err := s.AddUser(ctx, NewUser{Name: "frank", PasswordHash: "h"})
	if err != nil || f.ID != 3 {
		t.Fatalf("new account = %+v, %v; want id 3", f, err)
	}
	if names, to, complete, err := s.ChangesSince(ctx, gen, 10); err != nil || !complete || to <= gen || strings.Join(names, ",") != "frank" {
		t.Fatalf("changes since %d = %q to %d complete %v, %v", gen, names, to, complete, err)
	}
}
