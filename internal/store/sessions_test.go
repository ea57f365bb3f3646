package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

func record(id, user string, key byte, now time.Time) *SessionRecord {
	return &SessionRecord{ID: id, User: user, Key: bytes.Repeat([]byte{key}, 16), Protocol: "imap", Remote: "192.0.2.1",
		Created: now, Expires: now.Add(time.Hour), LastUsed: now, Epoch: 1}
}

// TestSessionWithItsStep: a session written with a time step is stored
// exactly when the step is accepted: of 20 sign-ins racing for one step,
// one session is stored, and a replayed step stores none.
func TestSessionWithItsStep(t *testing.T) {
	eachDialect(t, func(t *testing.T, db *testDB) {
		ctx := context.Background()
		s := db.open(t)
		s.AddUser(ctx, NewUser{Name: "carol", PasswordHash: "h"})
		a, _ := s.AddAuthenticator(ctx, "carol", "app", "JBSWY3DPEHPK3PXP")
		now := time.Unix(1_800_000_000, 0)
		var wg sync.WaitGroup
		for i := range 20 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				err := s.ConsumeStepWithSession(ctx, a.ID, 42, record(fmt.Sprint("s", i), "carol", byte(i), now))
				if err != nil && !errors.Is(err, ErrStepUsed) {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		got, err := s.Sessions(ctx, "carol")
		if err != nil || len(got) != 1 {
			t.Fatalf("%d sessions stored for one step (%v), want 1", len(got), err)
		}
		r, err := s.SessionByKey(ctx, got[0].Key)
		if err != nil || r.ID != got[0].ID || r.Protocol != "imap" || !r.Expires.Equal(now.Add(time.Hour)) || r.Epoch != 1 {
			t.Fatalf("SessionByKey = %+v, %v", r, err)
		}
		if _, err := s.SessionByKey(ctx, bytes.Repeat([]byte{99}, 16)); !errors.Is(err, ErrNotFound) {
			t.Fatalf("an unknown key: %v", err)
		}
	})
}

// TestSessionUseDeleteSweep: last use moves forward only; a delete by ID
// is logged as a change of the user (other instances poll the log); the
// sweep drops what ended.
func TestSessionUseDeleteSweep(t *testing.T) {
	eachDialect(t, func(t *testing.T, db *testDB) {
		ctx := context.Background()
		s := db.open(t)
		s.AddUser(ctx, NewUser{Name: "carol", PasswordHash: "h"})
		now := time.Unix(1_800_000_000, 0)
		for i, id := range []string{"a", "b", "c", "d"} {
			if err := s.SaveSession(ctx, record(id, "carol", byte(i), now)); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.TouchSessions(ctx, map[string]time.Time{"a": now.Add(20 * time.Minute)}); err != nil {
			t.Fatal(err)
		}
		s.TouchSessions(ctx, map[string]time.Time{"a": now.Add(time.Minute)})
		if r, _ := s.SessionByKey(ctx, bytes.Repeat([]byte{0}, 16)); !r.LastUsed.Equal(now.Add(20 * time.Minute)) {
			t.Fatalf("last use = %v, want %v", r.LastUsed, now.Add(20*time.Minute))
		}
		gen, _ := s.Generation(ctx)
		if user, err := s.DeleteSession(ctx, "b", true); err != nil || user != "carol" {
			t.Fatalf("DeleteSession = %q, %v", user, err)
		}
		if names, _, _, _ := s.ChangesSince(ctx, gen, 10); len(names) != 1 || names[0] != "carol" {
			t.Fatalf("changes after a revoke: %v", names)
		}
		if _, err := s.DeleteSession(ctx, "b", true); !errors.Is(err, ErrNotFound) {
			t.Fatalf("second delete: %v", err)
		}
		// c and d went idle; a was used at +20 min.
		n, err := s.SweepSessions(ctx, now.Add(35*time.Minute), 30*time.Minute)
		if err != nil || n != 2 {
			t.Fatalf("swept %d (%v), want 2", n, err)
		}
		if n, err := s.SweepSessions(ctx, now.Add(51*time.Minute), 30*time.Minute); err != nil || n != 1 {
			t.Fatalf("swept %d (%v) once a went idle too, want 1", n, err)
		}
	})
}

// TestFailureEvents: another instance's events come back, in order,
// without the asking instance's own failures but with its resets.
func TestFailureEvents(t *testing.T) {
	eachDialect(t, func(t *testing.T, db *testDB) {
		ctx := context.Background()
		s := db.open(t)
		now := time.Unix(1_800_000_000, 0)
		err := s.RecordFailures(ctx, []FailureEvent{
			{Key: "user:carol", Instance: "A", Kind: FailureFail, Str: "x", At: now},
			{Key: "user:carol", Instance: "B", Kind: FailureFail, Str: "y", At: now.Add(time.Second)},
			{Key: "user:carol", Instance: "B", Kind: FailureLock, At: now.Add(2 * time.Second), Until: now.Add(time.Hour), Level: 1},
			{Key: "user:carol", Instance: "A", Kind: FailureReset, At: now.Add(3 * time.Second)},
			{Key: "addr:192.0.2.1", Instance: "B", Kind: FailureFail, At: now},
		})
		if err != nil {
			t.Fatal(err)
		}
		got, err := s.FailureEvents(ctx, []string{"user:carol"}, now.Add(-time.Minute), "A")
		if err != nil || len(got) != 3 || got[0].Str != "y" || got[1].Kind != FailureLock || !got[1].Until.Equal(now.Add(time.Hour)) ||
			got[1].Level != 1 || got[2].Kind != FailureReset {
			t.Fatalf("events for A = %+v, %v", got, err)
		}
		if err := s.PruneFailures(ctx, now.Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		if got, _ := s.FailureEvents(ctx, []string{"user:carol", "addr:192.0.2.1"}, time.Time{}, "C"); len(got) != 0 {
			t.Fatalf("events after pruning: %+v", got)
		}
	})
}
