package server

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stepgate/stepgate/internal/config"
	"github.com/stepgate/stepgate/internal/datadir"
	"github.com/stepgate/stepgate/internal/testenv"
	"github.com/stepgate/stepgate/internal/verifier"
)

// TestLogsAreCutAndSummarised: the audit file and the operational log of
// `stepgate serve` cut long client-chosen strings and escape line breaks,
// and closing the core writes the summary of repeated refusals.
func TestLogsAreCutAndSummarised(t *testing.T) {
	t.Setenv(datadir.KeyFileEnv, "")
	dir := datadir.New(filepath.Join(t.TempDir(), "data"))
	cfg := config.Default()
	cfg.Audit.File = filepath.Join(t.TempDir(), "audit.log")
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ops := &testenv.Buffer{}
	core, closer, err := NewCore(context.Background(), cfg, dir, slog.New(slog.NewTextHandler(ops, nil)))
	if err != nil {
		t.Fatal(err)
	}
	name := "eve\n" + strings.Repeat("e", 1<<20)
	core.Log.Warn("connection closed: bad request", "err", "invalid DN "+name)
	for range 100 {
		core.Verifier.Refuse(context.Background(), verifier.Attempt{Protocol: "imap", User: name, Remote: "192.0.2.9"}, verifier.ReasonTooLong)
	}
	if err := closer.Close(); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(ops.String(), "\n"); n != 1 || len(ops.String()) > 1024 {
		t.Errorf("operational log: %d lines, %d bytes, want one short line", n, len(ops.String()))
	}
	b, err := os.ReadFile(cfg.Audit.File)
	if err != nil {
		t.Fatal(err)
	}
	log := string(b)
	if len(log) > 4096 || strings.Count(log, "\n") != 2 {
		t.Fatalf("100 refusals of a 1 MB name: %d bytes, %d lines in the audit file, want an event and a summary", len(log), strings.Count(log, "\n"))
	}
	for _, want := range []string{`"user":"eve\\x0aeeee`, `…[cut, 1048580 bytes]`, `"msg":"audit: suppressed 99 credentials_too_long events from 192.0.2.9 in `, `"log":"audit"`} {
		if !strings.Contains(log, want) {
			t.Errorf("audit file lacks %s:\n%s", want, log)
		}
	}
}
