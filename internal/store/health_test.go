package store

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stepgate/stepgate/internal/testenv"
)

// TestFullDiskWritesFailAndRecover: on a full file system a used step or
// recovery code is not recorded (and stays usable), the store says it is
// unhealthy naming the full disk, and the probe makes it healthy again
// once space is freed.
func TestFullDiskWritesFailAndRecover(t *testing.T) {
	dir := testenv.Tmpfs(t, 8<<20)
	ctx := context.Background()
	s := openTest(t, dir)
	u, err := s.AddUser(ctx, NewUser{Name: "alice", PasswordHash: "x"})
	if err != nil {
		t.Fatal(err)
	}
	a, err := s.AddAuthenticator(ctx, "alice", "phone", "JBSWY3DPEHPK3PXP")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.ConfirmAuthenticator(ctx, a.ID, 100); err != nil {
		t.Fatal(err)
	}
	if err := s.ReplaceRecoveryCodes(ctx, "alice", []string{"h1"}); err != nil {
		t.Fatal(err)
	}
	rid, ok, err := s.UnusedRecoveryCode(ctx, u.ID, "h1")
	if err != nil || !ok {
		t.Fatalf("recovery code: %v %v", ok, err)
	}
	if err := s.Healthy(); err != nil {
		t.Fatalf("healthy before the disk is full: %v", err)
	}

	filler := testenv.Fill(t, dir)
	err = s.ConsumeStep(ctx, a.ID, 101)
	if err == nil || errors.Is(err, ErrStepUsed) {
		t.Fatalf("ConsumeStep on a full disk = %v, want a write error", err)
	}
	if used, err := s.UseRecoveryCode(ctx, rid); used || err == nil {
		t.Fatalf("UseRecoveryCode on a full disk = %v, %v; want a write error", used, err)
	}
	if err := s.Healthy(); err == nil || !strings.Contains(err.Error(), "full") {
		t.Fatalf("Healthy after a failed write = %v, want the full disk", err)
	}
	// Still full: the probe keeps failing, and the store stays unhealthy.
	if err := s.probeWrite(ctx); err == nil || s.Healthy() == nil {
		t.Fatalf("probe on a full disk = %v, healthy = %v", err, s.Healthy())
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}

	probe := s.HealthProbe(nil)
	for i := 0; s.Healthy() != nil; i++ {
		if i == 500 {
			t.Fatalf("still unhealthy 5s after space was freed: %v", s.Healthy())
		}
		probe(ctx)
		time.Sleep(10 * time.Millisecond)
	}
	// Neither was burnt by the failed writes.
	if step, err := s.LastStep(ctx, a.ID); err != nil || step != 100 {
		t.Fatalf("last step after the failed write = %d, %v; want 100", step, err)
	}
	if err := s.ConsumeStep(ctx, a.ID, 101); err != nil {
		t.Fatalf("ConsumeStep once space is back: %v", err)
	}
	if used, err := s.UseRecoveryCode(ctx, rid); !used || err != nil {
		t.Fatalf("UseRecoveryCode once space is back = %v, %v", used, err)
	}
}

// TestNonStorageErrorsKeepHealthy: a replay or a constraint is the
// caller's business, not the storage's.
func TestNonStorageErrorsKeepHealthy(t *testing.T) {
	eachDialect(t, func(t *testing.T, db *testDB) {
		s := db.open(t)
		ctx := context.Background()
		if _, err := s.AddUser(ctx, NewUser{Name: "alice", PasswordHash: "x"}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.AddUser(ctx, NewUser{Name: "alice", PasswordHash: "x"}); !errors.Is(err, ErrExists) {
			t.Fatalf("second AddUser = %v", err)
		}
		a, err := s.AddAuthenticator(ctx, "alice", "phone", "JBSWY3DPEHPK3PXP")
		if err != nil {
			t.Fatal(err)
		}
		if err := s.ConsumeStep(ctx, a.ID, 5); err != nil {
			t.Fatal(err)
		}
		if err := s.ConsumeStep(ctx, a.ID, 5); !errors.Is(err, ErrStepUsed) {
			t.Fatalf("replayed step = %v", err)
		}
		if err := s.Healthy(); err != nil {
			t.Fatalf("Healthy after a replay and a duplicate name = %v", err)
		}
	})
}
