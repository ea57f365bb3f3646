package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/stepgate/stepgate/internal/seal"
	"github.com/stepgate/stepgate/internal/testenv/postgres"
)

// testDialect is one engine that the store's tests run against: SQLite,
// and PostgreSQL with a fresh database for each test in one cluster that
// the package's tests share (skipped loudly where PostgreSQL is not
// installed).
type testDialect struct {
	name    string
	dialect dialect
	// fresh returns where an empty database for one test is.
	fresh func(t testing.TB) string
	// open is the engine's constructor; raw opens the database without
	// migrating it, to build one at an older schema version.
	open func(ctx context.Context, where string, sealer *seal.Sealer, opts Options) (*Store, error)
	raw  func(where string) (*sql.DB, error)
	// files is true when the database is files next to where, which a
	// test can search for secrets in clear.
	files bool
}

var testDialects = []testDialect{
	{
		name:    "sqlite",
		dialect: sqliteDialect{},
		fresh:   func(t testing.TB) string { return filepath.Join(t.TempDir(), "stepgate.db") },
		open:    Open,
		raw:     openSQLite,
		files:   true,
	},
	{
		name:    "postgres",
		dialect: postgresDialect{},
		fresh:   freshPostgres,
		open: func(ctx context.Context, dsn string, sealer *seal.Sealer, opts Options) (*Store, error) {
			return OpenPostgres(ctx, dsn, "", sealer, opts)
		},
		raw: func(dsn string) (*sql.DB, error) {
			cfg, err := pgx.ParseConfig(dsn)
			if err != nil {
				return nil, err
			}
			return stdlib.OpenDB(*cfg), nil
		},
	},
}

// cluster is the PostgreSQL cluster the package's tests share, started by
// the first test that needs it (initdb takes a second or two) and stopped
// by TestMain.
var cluster struct {
	once sync.Once
	s    *postgres.Server
	err  error
}

func freshPostgres(t testing.TB) string {
	t.Helper()
	postgres.Need(t)
	cluster.once.Do(func() { cluster.s, cluster.err = postgres.New(postgres.Options{}) })
	if cluster.err != nil {
		t.Fatal(cluster.err)
	}
	return cluster.s.NewDatabase(t)
}

func TestMain(m *testing.M) {
	code := m.Run()
	if cluster.s != nil {
		cluster.s.Close()
	}
	os.Exit(code)
}

// testDB is one test's database and the key it is sealed with.
type testDB struct {
	testDialect
	where  string
	sealer *seal.Sealer
}

// eachDialect runs fn as a subtest per engine, each with an empty
// database.
func eachDialect(t *testing.T, fn func(t *testing.T, db *testDB)) {
	for _, td := range testDialects {
		t.Run(td.name, func(t *testing.T) {
			sealer, err := seal.LoadOrCreate(filepath.Join(t.TempDir(), "sealing.key"))
			if err != nil {
				t.Fatal(err)
			}
			fn(t, &testDB{testDialect: td, where: td.fresh(t), sealer: sealer})
		})
	}
}

// open opens the test's database, closed when the test ends.
func (db *testDB) open(t testing.TB) *Store {
	t.Helper()
	s, err := db.testDialect.open(context.Background(), db.where, db.sealer, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestSQLiteUniqueByCode: a unique violation is known by SQLite's error
// code, not by the words of its message, which another engine or a
// translated build would not share.
func TestSQLiteUniqueByCode(t *testing.T) {
	s := openTest(t, t.TempDir())
	_, err := s.db.Exec(`INSERT INTO meta (key, value) VALUES ('sealing_key_id', 'x')`)
	if err == nil || !s.d.isUnique(err) {
		t.Fatalf("duplicate primary key: %v, isUnique false", err)
	}
	if s.d.isUnique(errors.New("UNIQUE constraint failed: users.name")) {
		t.Fatal("an error that only reads like a violation counted as one")
	}
	if s.d.isUnique(fmt.Errorf("wrapped: %w", context.Canceled)) {
		t.Fatal("a cancelled request counted as a violation")
	}
}
