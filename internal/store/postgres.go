package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/stepgate/stepgate/internal/seal"
)

// OpenPostgres opens the PostgreSQL database that dsn names (a URL or
// key=value string, as libpq takes), applies pending migrations (one
// instance at a time, under an advisory lock) and checks that sealer holds
// the key the database was sealed with. Several stepgate instances may
// open one database: that is what it is for. passwordFile, when not
// empty, holds the password, so that the DSN can sit in a configuration
// file without it.
func OpenPostgres(ctx context.Context, dsn, passwordFile string, sealer *seal.Sealer, opts Options) (*Store, error) {
	if sealer == nil {
		return nil, errors.New("store postgres: no sealing key")
	}
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		// pgx's message carries the DSN with its password hidden.
		return nil, fmt.Errorf("store postgres: %w", err)
	}
	where := fmt.Sprintf("postgres %s@%s/%s", cfg.User, net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port))), cfg.Database)
	if passwordFile != "" {
		b, err := os.ReadFile(passwordFile)
		if err != nil {
			return nil, fmt.Errorf("store %s: password file: %w", where, err)
		}
		cfg.Password = strings.TrimRight(string(b), "\r\n")
	}
	if cfg.ConnectTimeout == 0 {
		// Without one, a server that drops packets holds a sign-in until
		// the system gives up on TCP, minutes later.
		cfg.ConnectTimeout = 5 * time.Second
	}
	db := stdlib.OpenDB(*cfg)
	// Each instance's share of the server's connections (100 by
	// default): group commit and the account cache need few.
	db.SetMaxOpenConns(16)
	db.SetMaxIdleConns(16)
	db.SetConnMaxIdleTime(5 * time.Minute)
	return open(ctx, postgresDialect{}, where, db, sealer, opts)
}

// postgresDialect is PostgreSQL through pgx's database/sql driver, for
// several instances sharing one database.
type postgresDialect struct{}

func (postgresDialect) name() string { return "postgres" }

// bind numbers the placeholders: ? becomes $1, $2, ... outside quotes.
func (postgresDialect) bind(q string) string {
	if !strings.Contains(q, "?") {
		return q
	}
	var b strings.Builder
	b.Grow(len(q) + 8)
	n := 0
	var quote byte
	for i := 0; i < len(q); i++ {
		c := q[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '\'' || c == '"':
			quote = c
		case c == '?':
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

func (postgresDialect) isUnique(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505"
}

// storageFault: the server is out of resources or shutting down, it
// cannot be reached, or the connection broke. A sign-in that meets one
// is answered "unavailable", never "wrong".
func (postgresDialect) storageFault(err error) (fault, known bool) {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case strings.HasPrefix(pe.Code, "08"), // connection exception
			strings.HasPrefix(pe.Code, "53"),       // insufficient resources (disk full, out of memory, too many connections)
			strings.HasPrefix(pe.Code, "57P"),      // admin or crash shutdown, cannot connect now
			strings.HasPrefix(pe.Code, "58"),       // system error (I/O)
			pe.Code == "25006",                     // read-only transaction: a standby, or the server set read-only
			pe.Code == "XX001", pe.Code == "XX002": // data or index corrupted
			return true, true
		}
		return false, true
	}
	var ce *pgconn.ConnectError
	var ne net.Error
	if errors.As(err, &ce) || errors.As(err, &ne) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, driver.ErrBadConn) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) {
		return true, true
	}
	return false, false
}

func (postgresDialect) hasTable(ctx context.Context, q querier, table string) (bool, error) {
	var ok bool
	err := q.QueryRowContext(ctx, `SELECT to_regclass($1) IS NOT NULL`, table).Scan(&ok)
	return ok, err
}

// migrationLock is the advisory lock key that migrating instances take:
// "stepgate" in ASCII, so that it is recognisable in pg_locks.
const migrationLock = 0x7374657067617465

// lockMigrations takes a transaction-scoped advisory lock: a second
// instance starting at the same moment waits here, then sees the schema
// version the first one left.
func (postgresDialect) lockMigrations(ctx context.Context, tx *sql.Tx) error {
	_, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(migrationLock))
	return err
}

// legacyVersion: stepgate always recorded PostgreSQL's version in
// schema_migrations.
func (postgresDialect) legacyVersion(context.Context, querier) (int, error) { return 0, nil }

func (postgresDialect) recordVersion(context.Context, *sql.Tx, int) error { return nil }
