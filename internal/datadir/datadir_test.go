package datadir

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stepgate/stepgate/internal/store"
	"github.com/stepgate/stepgate/internal/testenv/postgres"
)

func TestOpenCreatesPrivateFolder(t *testing.T) {
	t.Setenv(KeyFileEnv, "")
	d := New(filepath.Join(t.TempDir(), "data"))
	st, err := d.Open(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	for path, want := range map[string]os.FileMode{d.Path: 0o700, d.KeyFile: 0o600, d.DB(): 0o600} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %04o, want %04o", path, fi.Mode().Perm(), want)
		}
	}
}

func TestMissingKeyNamesTheFile(t *testing.T) {
	t.Setenv(KeyFileEnv, "")
	d := New(filepath.Join(t.TempDir(), "data"))
	st, err := d.Open(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	st.AddUser(context.Background(), store.NewUser{Name: "alice", PasswordHash: "h"})
	st.Close()
	os.Remove(d.KeyFile)
	_, err = d.Open(context.Background())
	if err == nil || !strings.Contains(err.Error(), d.KeyFile) || !strings.Contains(err.Error(), KeyFileEnv) {
		t.Fatalf("missing key: %v", err)
	}
	if _, statErr := os.Stat(d.KeyFile); statErr == nil {
		t.Fatal("a new key was made for a database sealed with the old one")
	}
}

func TestKeyFromEnvironment(t *testing.T) {
	keyFile := filepath.Join(t.TempDir(), "elsewhere.key")
	t.Setenv(KeyFileEnv, keyFile)
	d := New(filepath.Join(t.TempDir(), "data"))
	if d.KeyFile != keyFile {
		t.Fatalf("key file %s, want %s", d.KeyFile, keyFile)
	}
	st, err := d.Open(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	if _, err := os.Stat(filepath.Join(d.Path, "sealing.key")); err == nil {
		t.Fatal("key made in the data folder although the environment names another file")
	}
	// Another key for the same database is refused with both names.
	other := filepath.Join(t.TempDir(), "other.key")
	t.Setenv(KeyFileEnv, other)
	os.WriteFile(other, []byte("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n"), 0o600)
	_, err = New(d.Path).Open(context.Background())
	if err == nil || !strings.Contains(err.Error(), other) {
		t.Fatalf("wrong key: %v", err)
	}
}

// TestSnapshotInTheFolder: the session snapshot lives in the data folder,
// where the server found it before the folder named it.
func TestSnapshotInTheFolder(t *testing.T) {
	d := New(filepath.Join(t.TempDir(), "data"))
	if want := filepath.Join(d.Path, "sessions.snap"); d.Snapshot() != want {
		t.Fatalf("snapshot %s, want %s", d.Snapshot(), want)
	}
}

// TestPostgresSharedKey: instances on one PostgreSQL database need one
// sealing key. A second data folder without it is refused with a message
// that says to copy the first one's (and the useless key it made is not
// left there to confuse the next try); with the copy, it opens.
func TestPostgresSharedKey(t *testing.T) {
	t.Setenv(KeyFileEnv, "")
	pg := postgres.Start(t, postgres.Options{})
	dsn := pg.NewDatabase(t)
	a := New(filepath.Join(t.TempDir(), "a"))
	a.DSN = dsn
	st, err := a.Open(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	if _, err := os.Stat(filepath.Join(a.Path, "stepgate.db")); err == nil {
		t.Fatal("a SQLite file was made although the store is PostgreSQL")
	}
	b := New(filepath.Join(t.TempDir(), "b"))
	b.DSN = dsn
	_, err = b.Open(context.Background())
	if err == nil || !strings.Contains(err.Error(), "copy its sealing.key here") {
		t.Fatalf("second folder without the key: %v", err)
	}
	if _, err := os.Stat(b.KeyFile); err == nil {
		t.Fatal("the refused key was left in the second folder")
	}
	key, _ := os.ReadFile(a.KeyFile)
	os.WriteFile(b.KeyFile, key, 0o600)
	st, err = b.Open(context.Background())
	if err != nil {
		t.Fatalf("with the copied key: %v", err)
	}
	st.Close()
}
