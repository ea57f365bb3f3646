package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/stepgate/stepgate/internal/seal"
	"github.com/stepgate/stepgate/internal/testenv/postgres"
)

func TestPostgresBind(t *testing.T) {
	d := postgresDialect{}
	for in, want := range map[string]string{
		`SELECT 1`: `SELECT 1`,
		`UPDATE a SET x = ? WHERE id = ? AND y < ?`:                 `UPDATE a SET x = $1 WHERE id = $2 AND y < $3`,
		`SELECT '?', "a?b", ? FROM t WHERE s = 'it''s ?' AND v = ?`: `SELECT '?', "a?b", $1 FROM t WHERE s = 'it''s ?' AND v = $2`,
	} {
		if got := d.bind(in); got != want {
			t.Errorf("bind(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestPostgresStorageFaults: a server that is down, shutting down, out of
// room or unreachable is the storage's fault (a sign-in is answered
// unavailable); a duplicate, a replay or a cancelled request is not.
func TestPostgresStorageFaults(t *testing.T) {
	d := postgresDialect{}
	for _, c := range []struct {
		err          error
		fault, known bool
	}{
		{&pgconn.PgError{Code: "53100"}, true, true}, // disk full
		{&pgconn.PgError{Code: "53300"}, true, true}, // too many connections
		{&pgconn.PgError{Code: "57P01"}, true, true}, // admin shutdown
		{&pgconn.PgError{Code: "57P03"}, true, true}, // cannot connect now (starting up)
		{&pgconn.PgError{Code: "08006"}, true, true}, // connection failure
		{&pgconn.PgError{Code: "58030"}, true, true}, // I/O error
		{&pgconn.PgError{Code: "25006"}, true, true}, // read-only (a standby)
		{fmt.Errorf("wrapped: %w", &pgconn.PgError{Code: "23505"}), false, true},
		{&pgconn.PgError{Code: "40001"}, false, true}, // serialization: retry, not down
		{fmt.Errorf("commit: %w", io.ErrUnexpectedEOF), true, true},
		{fmt.Errorf("dial: %w", syscall.ECONNREFUSED), true, true},
		{context.Canceled, false, false},
		{errors.New("something else"), false, false},
	} {
		fault, known := d.storageFault(c.err)
		if fault != c.fault || known != c.known {
			t.Errorf("storageFault(%v) = %v, %v; want %v, %v", c.err, fault, known, c.fault, c.known)
		}
	}
	if !d.isUnique(fmt.Errorf("x: %w", &pgconn.PgError{Code: "23505"})) || d.isUnique(&pgconn.PgError{Code: "23503"}) {
		t.Fatal("isUnique does not go by SQLSTATE 23505")
	}
}

// TestConcurrentOpenMigratesOnce: several instances starting at once on
// an empty database all open it, and each migration ran once (the
// advisory lock; without it two would create the same table and one
// would fail).
func TestConcurrentOpenMigratesOnce(t *testing.T) {
	eachDialect(t, func(t *testing.T, db *testDB) {
		var wg sync.WaitGroup
		stores := make([]*Store, 4)
		errs := make([]error, len(stores))
		for i := range stores {
			wg.Add(1)
			go func() {
				defer wg.Done()
				stores[i], errs[i] = db.testDialect.open(context.Background(), db.where, db.sealer, Options{})
			}()
		}
		wg.Wait()
		for i, s := range stores {
			if errs[i] != nil {
				t.Fatalf("open %d: %v", i, errs[i])
			}
			defer s.Close()
		}
		var n, distinct int
		if err := stores[0].db.QueryRow(`SELECT COUNT(*), COUNT(DISTINCT version) FROM schema_migrations`).Scan(&n, &distinct); err != nil {
			t.Fatal(err)
		}
		if n != LatestVersion() || distinct != n {
			t.Fatalf("schema_migrations holds %d rows (%d versions), want each of %d once", n, distinct, LatestVersion())
		}
	})
}

// TestReplayAcrossInstances: two stores on one database are two
// instances, each with its own group committer and connections. Racing
// for the same step, exactly one of all their consumers wins; an older
// step is refused on both once a newer one is used.
func TestReplayAcrossInstances(t *testing.T) {
	eachDialect(t, func(t *testing.T, db *testDB) {
		ctx := context.Background()
		a, b := db.open(t), db.open(t)
		a.AddUser(ctx, NewUser{Name: "carol", PasswordHash: "h"})
		auth, err := a.AddAuthenticator(ctx, "carol", "app", "JBSWY3DPEHPK3PXP")
		if err != nil {
			t.Fatal(err)
		}
		for step := int64(100); step < 105; step++ {
			var wg sync.WaitGroup
			var mu sync.Mutex
			wins := 0
			for i := 0; i < 32; i++ {
				s := a
				if i%2 == 1 {
					s = b
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					err := s.ConsumeStep(ctx, auth.ID, step)
					mu.Lock()
					defer mu.Unlock()
					switch {
					case err == nil:
						wins++
					case !errors.Is(err, ErrStepUsed):
						t.Error(err)
					}
				}()
			}
			wg.Wait()
			if wins != 1 {
				t.Fatalf("step %d: %d consumers across two instances won, want 1", step, wins)
			}
		}
		for _, s := range []*Store{a, b} {
			if err := s.ConsumeStep(ctx, auth.ID, 103); !errors.Is(err, ErrStepUsed) {
				t.Fatalf("an older step after 104: %v, want ErrStepUsed", err)
			}
		}
	})
}

// TestPostgresDown: while the server is stopped, a used step is not
// recorded (and the error is not a replay), the health probe notices
// even without a write (reads fail too), and once the server is back the
// probe makes the store healthy and the step is still usable, once.
func TestPostgresDown(t *testing.T) {
	// A cluster of its own: stopping the shared one would fail other tests.
	srv := postgres.Start(t, postgres.Options{})
	ctx := context.Background()
	dsn := srv.NewDatabase(t)
	sealer, _ := seal.LoadOrCreate(filepath.Join(t.TempDir(), "sealing.key"))
	// The password from a file, as store.password_file gives it.
	pwFile := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(pwFile, []byte(srv.Password()+"\n"), 0o600)
	s, err := OpenPostgres(ctx, strings.Replace(dsn, ":"+srv.Password()+"@", "@", 1), pwFile, sealer, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.AddUser(ctx, NewUser{Name: "dora", PasswordHash: "h"})
	a, _ := s.AddAuthenticator(ctx, "dora", "app", "JBSWY3DPEHPK3PXP")
	probe := s.HealthProbe(nil)
	probe(ctx)
	if err := s.Healthy(); err != nil {
		t.Fatalf("healthy with the server up: %v", err)
	}

	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	// Nothing written yet: the probe alone must find out.
	probe(ctx)
	if err := s.Healthy(); err == nil {
		t.Fatal("healthy while the server is stopped: the probe did not notice")
	}
	if err := s.ConsumeStep(ctx, a.ID, 7); err == nil || errors.Is(err, ErrStepUsed) {
		t.Fatalf("ConsumeStep with the server down = %v, want a storage error", err)
	}
	if _, _, err := s.Account(ctx, "dora"); err == nil {
		t.Fatal("read with the server down succeeded")
	}

	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	for i := 0; s.Healthy() != nil; i++ {
		if i == 100 {
			t.Fatalf("still unhealthy 10s after the server came back: %v", s.Healthy())
		}
		probe(ctx)
		time.Sleep(100 * time.Millisecond)
	}
	if err := s.ConsumeStep(ctx, a.ID, 7); err != nil {
		t.Fatalf("the step the outage did not record, once back: %v", err)
	}
	if err := s.ConsumeStep(ctx, a.ID, 7); !errors.Is(err, ErrStepUsed) {
		t.Fatalf("the same step again: %v, want ErrStepUsed", err)
	}
}

// TestMigrationsAlike: every engine has a file for every schema version,
// so that a version means one schema whatever the engine.
func TestMigrationsAlike(t *testing.T) {
	sq, err := migrations("sqlite")
	if err != nil {
		t.Fatal(err)
	}
	pg, err := migrations("postgres")
	if err != nil {
		t.Fatal(err)
	}
	if len(pg) != len(sq) {
		t.Fatalf("postgres has %d migrations, sqlite %d", len(pg), len(sq))
	}
	for i := range sq {
		if sq[i].name != pg[i].name {
			t.Errorf("migration %d: sqlite %s, postgres %s", i+1, sq[i].name, pg[i].name)
		}
	}
}

// TestPostgresUnresponsive: a server that stops answering with the
// connections open (frozen) does not hold sign-ins: the commit gives up
// within its bound, the step is not used, and the store is unhealthy;
// once the server answers again the step is usable once.
func TestPostgresUnresponsive(t *testing.T) {
	srv := postgres.Start(t, postgres.Options{})
	ctx := context.Background()
	sealer, _ := seal.LoadOrCreate(filepath.Join(t.TempDir(), "sealing.key"))
	s, err := OpenPostgres(ctx, srv.NewDatabase(t), "", sealer, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.AddUser(ctx, NewUser{Name: "dora", PasswordHash: "h"})
	a, _ := s.AddAuthenticator(ctx, "dora", "app", "JBSWY3DPEHPK3PXP")
	if err := s.ConsumeStep(ctx, a.ID, 6); err != nil {
		t.Fatal(err)
	}
	old := commitTimeout
	commitTimeout = time.Second
	defer func() { commitTimeout = old }()

	thaw, err := srv.Freeze()
	if err != nil {
		t.Fatal(err)
	}
	defer thaw()
	done := make(chan error, 1)
	go func() { done <- s.ConsumeStep(ctx, a.ID, 7) }()
	select {
	case err := <-done:
		if err == nil || errors.Is(err, ErrStepUsed) {
			t.Fatalf("ConsumeStep with the server frozen = %v, want a storage error", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("ConsumeStep still waiting 20s after the server froze (the commit has a 1s bound)")
	}
	if s.Healthy() == nil {
		t.Fatal("healthy after a commit that got no answer")
	}
	thaw()
	probe := s.HealthProbe(nil)
	for i := 0; s.Healthy() != nil; i++ {
		if i == 100 {
			t.Fatalf("still unhealthy 10s after the server thawed: %v", s.Healthy())
		}
		probe(ctx)
		time.Sleep(100 * time.Millisecond)
	}
	if err := s.ConsumeStep(ctx, a.ID, 7); err != nil {
		t.Fatalf("the step the frozen server did not record: %v", err)
	}
	if err := s.ConsumeStep(ctx, a.ID, 7); !errors.Is(err, ErrStepUsed) {
		t.Fatalf("again: %v, want ErrStepUsed", err)
	}
}
