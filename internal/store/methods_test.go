package store

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestMethods(t *testing.T) {
	eachDialect(t, func(t *testing.T, db *testDB) {
		ctx := context.Background()
		s := db.open(t)
		u, err := s.AddUser(ctx, NewUser{Name: "alice", PasswordHash: "h"})
		if err != nil {
			t.Fatal(err)
		}
		phone, created, err := s.AddMethod(ctx, "alice", MethodSMS, "+447700900123")
		if err != nil || !created || phone.Verified || phone.Address != "+447700900123" {
			t.Fatalf("AddMethod = %+v, %v, %v", phone, created, err)
		}
		again, created, err := s.AddMethod(ctx, "ALICE", MethodSMS, "+447700900123")
		if err != nil || created || again.ID != phone.ID {
			t.Fatalf("the same address again = %+v, %v, %v; want the existing method", again, created, err)
		}
		mail, _, err := s.AddMethod(ctx, "alice", MethodEmail, "alice@example.org")
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.AddMethod(ctx, "nobody", MethodEmail, "x@example.org"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("method for an unknown user: %v", err)
		}
		if _, _, err := s.AddMethod(ctx, "alice", "pigeon", "x"); err == nil {
			t.Fatal("unknown kind accepted")
		}

		exp := time.Now().Add(time.Hour).Truncate(time.Second)
		if err := s.SetMethodCode(ctx, phone.ID, "codehash", exp); err != nil {
			t.Fatal(err)
		}
		if err := s.MethodCodeFailed(ctx, u.ID); err != nil {
			t.Fatal(err)
		}
		if m, _ := s.Method(ctx, phone.ID); m.CodeHash != "codehash" || !m.CodeExpires.Equal(exp) || m.CodeFailures != 1 {
			t.Fatalf("pending code = %+v", m)
		}
		if ok, _ := s.HasVerifiedMethod(ctx, u.ID, MethodSMS, MethodEmail); ok {
			t.Fatal("an unverified method counts")
		}
		if err := s.SetPrimaryMethod(ctx, u.ID, phone.ID); err == nil {
			t.Fatal("an unverified method became primary")
		}
		if err := s.VerifyMethod(ctx, phone.ID); err != nil {
			t.Fatal(err)
		}
		if err := s.VerifyMethod(ctx, mail.ID); err != nil {
			t.Fatal(err)
		}
		ms, err := s.Methods(ctx, u.ID)
		if err != nil || len(ms) != 2 {
			t.Fatalf("Methods = %+v, %v", ms, err)
		}
		if !ms[0].Verified || !ms[0].Primary || ms[0].CodeHash != "" || ms[1].Primary {
			t.Fatalf("after verifying both, the first should be primary: %+v", ms)
		}
		if ok, _ := s.HasVerifiedMethod(ctx, u.ID, MethodEmail); !ok {
			t.Fatal("a verified e-mail method does not count")
		}
		if err := s.SetPrimaryMethod(ctx, u.ID, mail.ID); err != nil {
			t.Fatal(err)
		}
		ms, _ = s.Methods(ctx, u.ID)
		if ms[0].Primary || !ms[1].Primary {
			t.Fatalf("primary did not move: %+v", ms)
		}
		if err := s.RemoveMethod(ctx, u.ID+1, phone.ID); !errors.Is(err, ErrNotFound) {
			t.Fatalf("removing another user's method: %v", err)
		}
		if err := s.RemoveMethod(ctx, u.ID, phone.ID); err != nil {
			t.Fatal(err)
		}
		if err := s.SetTwoStep(ctx, "alice", TwoStepActive); err != nil {
			t.Fatal(err)
		}
		if u, _ := s.User(ctx, "alice"); u.TwoStep != TwoStepActive {
			t.Fatalf("two-step = %s", u.TwoStep)
		}
		if err := s.SetTwoStep(ctx, "alice", "on"); err == nil {
			t.Fatal("a bad two-step state was accepted")
		}

		// Neither the phone number nor the address is anywhere in the files.
		s.Close()
		if db.files {
			assertNotInFiles(t, filepath.Dir(db.where), "+447700900123", "447700900123", "alice@example.org")
		}
	})
}

func assertNotInFiles(t *testing.T, dir string, secrets ...string) {
	t.Helper()
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, s := range secrets {
			if bytes.Contains(b, []byte(s)) {
				t.Errorf("%s holds %q in clear", p, s)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestRecoveryCodes(t *testing.T) {
	eachDialect(t, func(t *testing.T, db *testDB) {
		ctx := context.Background()
		s := db.open(t)
		u, err := s.AddUser(ctx, NewUser{Name: "alice", PasswordHash: "h"})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.ReplaceRecoveryCodes(ctx, "alice", []string{"a", "b", "c"}); err != nil {
			t.Fatal(err)
		}
		id, ok, err := s.UnusedRecoveryCode(ctx, u.ID, "b")
		if err != nil || !ok {
			t.Fatalf("UnusedRecoveryCode = %v, %v", ok, err)
		}
		if used, _ := s.UseRecoveryCode(ctx, id); !used {
			t.Fatal("a fresh code was not usable")
		}
		if used, _ := s.UseRecoveryCode(ctx, id); used {
			t.Fatal("a code was used twice")
		}
		if _, ok, _ := s.UnusedRecoveryCode(ctx, u.ID, "b"); ok {
			t.Fatal("a used code is still found")
		}
		if n, _ := s.RecoveryCodesLeft(ctx, u.ID); n != 2 {
			t.Fatalf("left = %d, want 2", n)
		}
		// A new set: the old codes are gone.
		if err := s.ReplaceRecoveryCodes(ctx, "alice", []string{"d", "e"}); err != nil {
			t.Fatal(err)
		}
		if _, ok, _ := s.UnusedRecoveryCode(ctx, u.ID, "a"); ok {
			t.Fatal("a code of the previous set still works")
		}
		if n, _ := s.RecoveryCodesLeft(ctx, u.ID); n != 2 {
			t.Fatalf("left = %d, want 2", n)
		}
		if err := s.ReplaceRecoveryCodes(ctx, "nobody", []string{"x"}); !errors.Is(err, ErrNotFound) {
			t.Fatalf("codes for an unknown user: %v", err)
		}
	})
}
