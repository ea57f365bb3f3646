package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stepgate/stepgate/internal/seal"
)

func openTest(t testing.TB, dir string) *Store {
	t.Helper()
	sealer, err := seal.LoadOrCreate(filepath.Join(dir, "sealing.key"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(context.Background(), filepath.Join(dir, "stepgate.db"), sealer, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestUsersAndAuthenticators(t *testing.T) {
	eachDialect(t, func(t *testing.T, db *testDB) {
		ctx := context.Background()
		s := db.open(t)
		u, err := s.AddUser(ctx, NewUser{Name: "alice", Email: "alice@example.org", PasswordHash: "h", Groups: []string{"staff", "mail"}})
		if err != nil {
			t.Fatal(err)
		}
		if u.TwoStep != TwoStepNone || u.Epoch != 1 || strings.Join(u.Groups, ",") != "mail,staff" {
			t.Fatalf("new user = %+v", u)
		}
		if _, err := s.AddUser(ctx, NewUser{Name: "ALICE", PasswordHash: "h"}); !errors.Is(err, ErrExists) {
			t.Fatalf("duplicate name (other case): %v, want ErrExists", err)
		}
		if _, err := s.AddUser(ctx, NewUser{Name: "bad name", PasswordHash: "h"}); err == nil {
			t.Fatal("name with a space accepted")
		}
		if _, err := s.User(ctx, "Alice"); err != nil {
			t.Fatalf("lookup without regard to case: %v", err)
		}
		a, err := s.AddAuthenticator(ctx, "alice", "phone", "JBSWY3DPEHPK3PXP")
		if err != nil {
			t.Fatal(err)
		}
		u, _ = s.User(ctx, "alice")
		if u.TwoStep != TwoStepPending {
			t.Fatalf("after enroll: %s, want pending", u.TwoStep)
		}
		if as, _ := s.Authenticators(ctx, u.ID, true); len(as) != 0 {
			t.Fatalf("unconfirmed authenticator listed as confirmed")
		}
		if err := s.ConfirmAuthenticator(ctx, a.ID, 100); err != nil {
			t.Fatal(err)
		}
		u, _ = s.User(ctx, "alice")
		as, err := s.Authenticators(ctx, u.ID, true)
		if err != nil || len(as) != 1 || as[0].Secret != "JBSWY3DPEHPK3PXP" || as[0].LastStep != 100 || u.TwoStep != TwoStepActive {
			t.Fatalf("after confirm: %+v %v, user %s", as, err, u.TwoStep)
		}
		if err := s.SetPassword(ctx, "alice", "h2"); err != nil {
			t.Fatal(err)
		}
		if u2, _ := s.User(ctx, "alice"); u2.Epoch != u.Epoch+1 || u2.PasswordHash != "h2" {
			t.Fatalf("password change: epoch %d -> %d", u.Epoch, u2.Epoch)
		}
		gen, _ := s.Generation(ctx)
		if err := s.ConsumeStep(ctx, a.ID, 101); err != nil {
			t.Fatal(err)
		}
		if gen2, _ := s.Generation(ctx); gen2 != gen {
			t.Fatal("accepting a code moved the generation: caches would reload on every sign-in")
		}
		if err := s.DisableTwoStep(ctx, "alice"); err != nil {
			t.Fatal(err)
		}
		if gen2, _ := s.Generation(ctx); gen2 == gen {
			t.Fatal("disabling two-step did not move the generation")
		}
		u3, _ := s.User(ctx, "alice")
		if u3.TwoStep != TwoStepNone || u3.Epoch != u.Epoch+2 {
			t.Fatalf("after disable-2sv: %+v", u3)
		}
		if as, _ := s.Authenticators(ctx, u.ID, false); len(as) != 0 {
			t.Fatal("authenticators left after disable-2sv")
		}
		gs, err := s.Groups(ctx)
		if err != nil || len(gs) != 2 || gs[0].Name != "mail" || gs[0].Members[0] != "alice" {
			t.Fatalf("groups = %+v, %v", gs, err)
		}
		if err := s.DeleteUser(ctx, "alice"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.User(ctx, "alice"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("after delete: %v", err)
		}
		if err := s.DeleteUser(ctx, "alice"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("delete twice: %v", err)
		}
	})
}

// TestReplayGuardSurvivesRestart: a step accepted before a restart stays
// used after it.
func TestReplayGuardSurvivesRestart(t *testing.T) {
	eachDialect(t, func(t *testing.T, db *testDB) {
		ctx := context.Background()
		s := db.open(t)
		s.AddUser(ctx, NewUser{Name: "bob", PasswordHash: "h"})
		a, _ := s.AddAuthenticator(ctx, "bob", "app", "JBSWY3DPEHPK3PXP")
		s.ConfirmAuthenticator(ctx, a.ID, 10)
		if err := s.ConsumeStep(ctx, a.ID, 11); err != nil {
			t.Fatal(err)
		}
		s.Close()
		s2 := db.open(t)
		for _, step := range []int64{10, 11} {
			if err := s2.ConsumeStep(ctx, a.ID, step); !errors.Is(err, ErrStepUsed) {
				t.Fatalf("step %d after restart: %v, want ErrStepUsed", step, err)
			}
		}
		if err := s2.ConsumeStep(ctx, a.ID, 12); err != nil {
			t.Fatalf("next step: %v", err)
		}
	})
}

// TestConsumeStepOnce: of many concurrent consumers of one step, exactly
// one wins.
func TestConsumeStepOnce(t *testing.T) {
	eachDialect(t, func(t *testing.T, db *testDB) {
		ctx := context.Background()
		s := db.open(t)
		s.AddUser(ctx, NewUser{Name: "carol", PasswordHash: "h"})
		a, _ := s.AddAuthenticator(ctx, "carol", "app", "JBSWY3DPEHPK3PXP")
		var wg sync.WaitGroup
		var mu sync.Mutex
		wins := 0
		for i := 0; i < 50; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				err := s.ConsumeStep(ctx, a.ID, 42)
				if err == nil {
					mu.Lock()
					wins++
					mu.Unlock()
				} else if !errors.Is(err, ErrStepUsed) {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		if wins != 1 {
			t.Fatalf("%d consumers won step 42, want 1", wins)
		}
	})
}

func TestWrongSealingKey(t *testing.T) {
	eachDialect(t, func(t *testing.T, db *testDB) {
		ctx := context.Background()
		dir := t.TempDir()
		s := db.open(t)
		s.AddUser(ctx, NewUser{Name: "dave", PasswordHash: "h"})
		s.Close()
		other, _ := seal.LoadOrCreate(filepath.Join(dir, "other.key"))
		_, err := db.testDialect.open(ctx, db.where, other, Options{})
		if err == nil {
			t.Fatal("opened a database with the wrong sealing key")
		}
		if !strings.Contains(err.Error(), filepath.Join(dir, "other.key")) {
			t.Fatalf("error %q does not name the key file", err)
		}
	})
}

// TestMigrateOldDatabase builds a database at schema version 1 with an
// account in it, then opens it with the current binary.
func TestMigrateOldDatabase(t *testing.T) {
	eachDialect(t, func(t *testing.T, db *testDB) {
		ctx := context.Background()
		old := &Store{path: db.where, d: db.dialect, sealer: db.sealer, now: time.Now}
		var err error
		old.db, err = db.raw(db.where)
		if err != nil {
			t.Fatal(err)
		}
		if err := old.migrateTo(ctx, 1); err != nil {
			t.Fatal(err)
		}
		if _, err := old.db.Exec(`INSERT INTO users (name, password_hash, two_step, created_at, updated_at) VALUES ('erin', 'h', 'active', 1, 1)`); err != nil {
			t.Fatal(err)
		}
		old.db.Close()

		s := db.open(t)
		v, _ := s.Version(ctx)
		if v != LatestVersion() || v < 2 {
			t.Fatalf("schema version %d, want %d", v, LatestVersion())
		}
		u, err := s.User(ctx, "erin")
		if err != nil || u.TwoStep != TwoStepActive || u.Service {
			t.Fatalf("migrated user = %+v, %v", u, err)
		}
		if err := s.AddToGroups(ctx, "erin", []string{"staff"}); err != nil {
			t.Fatalf("groups after migration: %v", err)
		}
	})
}

// TestNewerSchemaRecordRefused: a database that a newer stepgate migrated
// past what this one knows is refused, whatever the engine.
func TestNewerSchemaRecordRefused(t *testing.T) {
	eachDialect(t, func(t *testing.T, db *testDB) {
		ctx := context.Background()
		s := db.open(t)
		if _, err := s.db.Exec(s.sql(`INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, 'future.sql', 0)`), LatestVersion()+1); err != nil {
			t.Fatal(err)
		}
		s.Close()
		_, err := db.testDialect.open(ctx, db.where, db.sealer, Options{})
		if err == nil || !strings.Contains(err.Error(), "newer") {
			t.Fatalf("newer schema: %v", err)
		}
	})
}

// TestNewerSchemaRefused: the same for the version a stepgate from before
// schema_migrations records (SQLite's user_version).
func TestNewerSchemaRefused(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openTest(t, dir)
	s.db.Exec(`PRAGMA user_version = 999`)
	s.Close()
	sealer, _ := seal.LoadOrCreate(filepath.Join(dir, "sealing.key"))
	_, err := Open(ctx, filepath.Join(dir, "stepgate.db"), sealer, Options{})
	if err == nil || !strings.Contains(err.Error(), "newer") {
		t.Fatalf("newer schema: %v", err)
	}
}

// TestNoSecretInClear: the TOTP secret never reaches the files in clear.
func TestNoSecretInClear(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openTest(t, dir)
	s.AddUser(ctx, NewUser{Name: "frank", PasswordHash: "h"})
	const secret = "KRUGS4ZANFZSA5DIMUQHGZLDOJSXI2LT"
	s.AddAuthenticator(ctx, "frank", "app", secret)
	s.Close()
	files, _ := filepath.Glob(filepath.Join(dir, "*"))
	for _, f := range files {
		b, _ := os.ReadFile(f)
		if bytes.Contains(b, []byte(secret)) {
			t.Fatalf("%s contains the TOTP secret in clear", f)
		}
		if fi, _ := os.Stat(f); fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s has mode %04o, readable by others", f, fi.Mode().Perm())
		}
	}
}

func TestImport(t *testing.T) {
	eachDialect(t, func(t *testing.T, db *testDB) {
		st := db.open(t)
		ctx := context.Background()
		err := st.Import(ctx, []Imported{
			{NewUser: NewUser{Name: "ann", PasswordHash: "{SSHA}x", Groups: []string{"staff"}}, TOTPSecret: "JBSWY3DPEHPK3PXP"},
			{NewUser: NewUser{Name: "ben", PasswordHash: "{SSHA}y"}},
		})
		if err != nil {
			t.Fatal(err)
		}
		u, auths, err := st.Account(ctx, "ann")
		if err != nil || u.TwoStep != TwoStepActive || len(auths) != 1 || auths[0].Secret != "JBSWY3DPEHPK3PXP" {
			t.Fatalf("ann = %+v, %+v, %v", u, auths, err)
		}
		if u, _ := st.User(ctx, "ann"); u == nil || len(u.Groups) != 1 || u.Groups[0] != "staff" {
			t.Fatalf("ann's groups = %+v", u)
		}
		if u, _ := st.User(ctx, "ben"); u == nil || u.TwoStep != TwoStepNone {
			t.Fatalf("ben = %+v", u)
		}
		// All or nothing: a duplicate name rolls the whole import back.
		err = st.Import(ctx, []Imported{{NewUser: NewUser{Name: "cid", PasswordHash: "h"}}, {NewUser: NewUser{Name: "ann", PasswordHash: "h"}}})
		if !errors.Is(err, ErrExists) {
			t.Fatalf("duplicate import: %v", err)
		}
		if _, err := st.User(ctx, "cid"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("cid after a failed import: %v", err)
		}

		// Labelled authenticators keep their last used step; recovery
		// codes are stored as the hash the caller makes of them.
		hash := func(id int64, code string) string { return fmt.Sprintf("%d:%s", id, code) }
		err = st.ImportWith(ctx, []Imported{{NewUser: NewUser{Name: "dot", PasswordHash: "h"}, Disabled: true,
			Authenticators: []ImportedAuthenticator{{Label: "phone", Secret: "JBSWY3DPEHPK3PXP", LastStep: 42}, {Label: "tablet", Secret: "KRSXG5A="}},
			RecoveryCodes:  []string{"1111-2222-3333", "4444-5555-6666"}}}, ImportOptions{RecoveryHash: hash})
		if err != nil {
			t.Fatal(err)
		}
		u, auths, err = st.Account(ctx, "dot")
		if err != nil || !u.Disabled || u.TwoStep != TwoStepActive || len(auths) != 2 || auths[0].Label != "phone" || auths[0].LastStep != 42 || auths[1].Label != "tablet" {
			t.Fatalf("dot = %+v, %+v, %v", u, auths, err)
		}
		if _, ok, err := st.UnusedRecoveryCode(ctx, u.ID, hash(u.ID, "4444-5555-6666")); !ok || err != nil {
			t.Fatalf("dot's recovery code: %v %v", ok, err)
		}
		if n, _ := st.RecoveryCodesLeft(ctx, u.ID); n != 2 {
			t.Fatalf("dot has %d recovery codes, want 2", n)
		}
		if err := st.Import(ctx, []Imported{{NewUser: NewUser{Name: "eve", PasswordHash: "h"}, RecoveryCodes: []string{"1111-2222-3333"}}}); err == nil {
			t.Fatal("recovery codes without a hash function were imported")
		}
	})
}
