package seal

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadOrCreate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "sealing.key")
	s, err := LoadOrCreate(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %04o, want 0600", fi.Mode().Perm())
	}
	again, err := LoadOrCreate(path)
	if err != nil {
		t.Fatal(err)
	}
	if s.KeyID() != again.KeyID() {
		t.Fatal("reloading the key file gave another key")
	}
	sealed, err := s.Seal([]byte("JBSWY3DPEHPK3PXP"), "authenticator 1")
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, []byte("JBSWY3DPEHPK3PXP")) {
		t.Fatal("sealed value contains the plaintext")
	}
	pt, err := again.Open(sealed, "authenticator 1")
	if err != nil || string(pt) != "JBSWY3DPEHPK3PXP" {
		t.Fatalf("Open = %q, %v", pt, err)
	}
	if _, err := again.Open(sealed, "authenticator 2"); !errors.Is(err, ErrOpen) {
		t.Fatalf("other context: %v, want ErrOpen", err)
	}
}

func TestWrongKey(t *testing.T) {
	dir := t.TempDir()
	a, _ := LoadOrCreate(filepath.Join(dir, "a.key"))
	b, _ := LoadOrCreate(filepath.Join(dir, "b.key"))
	sealed, _ := a.Seal([]byte("secret"), "x")
	_, err := b.Open(sealed, "x")
	if !errors.Is(err, ErrOpen) {
		t.Fatalf("wrong key: %v, want ErrOpen", err)
	}
	if !strings.Contains(err.Error(), filepath.Join(dir, "b.key")) {
		t.Fatalf("error %q does not name the key file", err)
	}
	if a.KeyID() == b.KeyID() {
		t.Fatal("two keys share a key id")
	}
	if _, err := b.Open([]byte{1, 2, 3}, "x"); !errors.Is(err, ErrOpen) {
		t.Fatalf("short value: %v", err)
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.key")
	if _, err := Load(missing); err == nil || !strings.Contains(err.Error(), missing) {
		t.Fatalf("missing key: %v", err)
	}
	open := filepath.Join(dir, "open.key")
	os.WriteFile(open, []byte(strings.Repeat("A", 43)+"=\n"), 0o644)
	if _, err := Load(open); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("world-readable key: %v", err)
	}
	bad := filepath.Join(dir, "bad.key")
	os.WriteFile(bad, []byte("not a key\n"), 0o600)
	if _, err := Load(bad); err == nil || !strings.Contains(err.Error(), bad) {
		t.Fatalf("garbage key: %v", err)
	}
}

func TestDerive(t *testing.T) {
	s, _ := LoadOrCreate(filepath.Join(t.TempDir(), "k"))
	a, b := s.Derive("session"), s.Derive("sent code")
	if bytes.Equal(a, b) || len(a) != 32 {
		t.Fatal("derived keys for different purposes are equal or short")
	}
	if !bytes.Equal(a, s.Derive("session")) {
		t.Fatal("derivation is not deterministic")
	}
}
