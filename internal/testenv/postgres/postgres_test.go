package postgres

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// TestClusterStopsAndStarts: a cluster takes password sign-ins over TCP,
// refuses a wrong password, keeps what was committed across a crash and
// a restart on the same port, and leaves nothing behind.
func TestClusterStopsAndStarts(t *testing.T) {
	s := Start(t, Options{})
	ctx := context.Background()
	dsn := s.NewDatabase(t)
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "CREATE TABLE kept (v INT); INSERT INTO kept VALUES (7)"); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
	if c, err := pgx.Connect(ctx, strings.Replace(dsn, s.Password(), "wrong", 1)); err == nil {
		c.Close(ctx)
		t.Fatal("a wrong password was let in")
	}
	if err := s.Crash(); err != nil {
		t.Fatal(err)
	}
	if c, err := pgx.Connect(ctx, dsn); err == nil {
		c.Close(ctx)
		t.Fatal("connected to a stopped cluster")
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	conn, err = pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	var v int
	if err := conn.QueryRow(ctx, "SELECT v FROM kept").Scan(&v); err != nil || v != 7 {
		t.Fatalf("after a crash and a start: %d, %v", v, err)
	}
	conn.Close(ctx)
	if out, err := s.Psql(strings.TrimPrefix(dsn[strings.LastIndex(dsn, "/"):strings.Index(dsn, "?")], "/"), "SELECT v FROM kept"); err != nil || out != "7" {
		t.Fatalf("psql: %q %v", out, err)
	}
	dir := s.dir
	s.Close()
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("cluster folder left behind: %v", err)
	}
}
