package store

import (
	"context"
	"database/sql"
)

// A dialect is what the store needs to know about one database engine.
// The store writes its SQL once, in the part of the language SQLite and
// PostgreSQL share (? placeholders, RETURNING, ON CONFLICT, TRUE and
// FALSE, CASE), and asks the dialect for the rest. What a schema does
// differently (column types, case-insensitive columns, triggers) lives in
// the engine's own folder under migrations/, numbered alike. Adding an
// engine is one file with its constructor and dialect, plus that folder.
type dialect interface {
	// name is the engine's name and its folder under migrations/.
	name() string
	// bind rewrites a statement's ? placeholders into the driver's own.
	bind(q string) string
	// isUnique reports whether err is a unique-constraint violation.
	isUnique(err error) bool
	// storageFault reports whether err says the storage itself cannot
	// take writes (a full disk, an I/O error) rather than a constraint, a
	// replay or a cancelled request; known is false when err is not the
	// engine's own, and the store then looks at the system error.
	storageFault(err error) (fault, known bool)
	// hasTable reports whether table exists.
	hasTable(ctx context.Context, q querier, table string) (bool, error)
	// lockMigrations makes the migrating transaction tx exclusive among
	// processes, so that two processes never apply one migration twice.
	lockMigrations(ctx context.Context, tx *sql.Tx) error
	// legacyVersion is a schema version the engine recorded outside the
	// schema_migrations table (0 if none); recordVersion keeps it in step
	// inside a migration's transaction.
	legacyVersion(ctx context.Context, q querier) (int, error)
	recordVersion(ctx context.Context, tx *sql.Tx, version int) error
}

// querier is a database or a transaction.
type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// sql binds a statement written with ? placeholders for the store's
// engine.
func (s *Store) sql(q string) string { return s.d.bind(q) }
