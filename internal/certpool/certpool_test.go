package certpool

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stepgate/stepgate/internal/testenv"
)

func TestLoad(t *testing.T) {
	if p, err := Load("x.ca_file", ""); p != nil || err != nil {
		t.Fatalf("no file: %v, %v", p, err)
	}
	dir := t.TempDir()
	if _, err := Load("x.ca_file", filepath.Join(dir, "missing.pem")); err == nil || !strings.HasPrefix(err.Error(), "x.ca_file: ") {
		t.Fatalf("missing file: %v", err)
	}
	junk := filepath.Join(dir, "junk.pem")
	os.WriteFile(junk, []byte("not a certificate"), 0o600)
	if _, err := Load("x.ca_file", junk); err == nil || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Fatalf("junk file: %v", err)
	}
	pki := testenv.NewPKI(t)
	if p, err := Load("x.ca_file", pki.CAFile); err != nil || p == nil {
		t.Fatalf("the test CA: %v, %v", p, err)
	}
}
