package session

import (
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"
)

// TestUserListAndIDMap: the user lists and the ID map beside memdb follow
// every way a session enters or leaves (create, replace, revoke by ID, by
// user, by epoch, sweep), with names matched regardless of case as the
// memdb user index did.
func TestUserListAndIDMap(t *testing.T) {
	s, c := newTest(t)
	var alice []*Session
	for i := 0; i < 4; i++ {
		sess, err := s.Create(NewSession{User: "alice", Key: s.KeyFor("alice", fmt.Sprint(i)), Epoch: int64(i)})
		if err != nil {
			t.Fatal(err)
		}
		alice = append(alice, sess)
	}
	bob, _ := s.Create(NewSession{User: "bob", Key: s.KeyFor("bob", "1"), Epoch: 1})

	ids := func(user string) []string {
		var out []string
		for _, sess := range s.List(user) {
			out = append(out, sess.ID)
		}
		return out
	}
	if got := ids("ALICE"); len(got) != 4 {
		t.Fatalf("List(ALICE) = %v", got)
	}
	all := ids("")
	for i := 1; i < len(all); i++ {
		if all[i-1] >= all[i] {
			t.Fatalf("List is not in ID order: %v", all)
		}
	}
	// Out of the middle of the list.
	if !s.Revoke(alice[2].ID) {
		t.Fatal("Revoke by ID")
	}
	if _, ok := s.Get(alice[2].ID); ok {
		t.Fatal("Get finds a revoked session")
	}
	if got := ids("alice"); len(got) != 3 {
		t.Fatalf("List after revoking one = %v", got)
	}
	// Epochs 0 and 1 go, 3 stays.
	if n := s.RevokeBefore("Alice", 2); n != 2 {
		t.Fatalf("RevokeBefore = %d", n)
	}
	if got := ids("alice"); len(got) != 1 || got[0] != alice[3].ID {
		t.Fatalf("List after RevokeBefore = %v, want [%s]", got, alice[3].ID)
	}
	// A new session for the same key under a newer epoch replaces the old.
	repl, _ := s.Create(NewSession{User: "alice", Key: s.KeyFor("alice", "3"), Epoch: 9})
	if repl.ID == alice[3].ID {
		t.Fatal("no new session for a new epoch")
	}
	if _, ok := s.Get(alice[3].ID); ok {
		t.Fatal("the replaced session is still found by ID")
	}
	select {
	case <-alice[3].Revoked():
	default:
		t.Fatal("the replaced session is not revoked")
	}
	if got := ids("alice"); len(got) != 1 || got[0] != repl.ID {
		t.Fatalf("List after replace = %v, want [%s]", got, repl.ID)
	}
	if n := s.RevokeUser("alice"); n != 1 || len(ids("alice")) != 0 || s.RevokeUser("alice") != 0 {
		t.Fatalf("RevokeUser = %d, left %v", n, ids("alice"))
	}
	if got, ok := s.Get(bob.ID); !ok || got != bob {
		t.Fatal("bob's session lost")
	}
	// Sweep drops bob's expired session from the ID map and his list.
	c.Advance(DefaultIdle)
	if n := s.Sweep(); n != 1 {
		t.Fatalf("Sweep = %d", n)
	}
	if _, ok := s.Get(bob.ID); ok {
		t.Fatal("Get finds a swept session")
	}
	if _, ok := s.byUser["bob"]; ok || len(s.byID) != 0 || s.Live() != 0 {
		t.Fatalf("left behind: %d by ID, bob listed %v, %d live", len(s.byID), ok, s.Live())
	}
}

// TestRevokedLazily: a session revoked before anyone watched it gives a
// closed channel to a later watcher; one watched before is closed by the
// revocation, and watchers share one channel.
func TestRevokedLazily(t *testing.T) {
	s, _ := newTest(t)
	early, _ := s.Create(NewSession{User: "alice", Key: s.KeyFor("alice", "1")})
	late, _ := s.Create(NewSession{User: "alice", Key: s.KeyFor("alice", "2")})
	w := early.Revoked()
	if w != early.Revoked() {
		t.Fatal("two watchers got two channels")
	}
	select {
	case <-w:
		t.Fatal("closed before revocation")
	default:
	}
	if s.RevokeUser("alice") != 2 {
		t.Fatal("RevokeUser")
	}
	select {
	case <-w:
	default:
		t.Fatal("a watched session's channel not closed by its revocation")
	}
	select {
	case <-late.Revoked():
	default:
		t.Fatal("Revoked after revocation is not closed")
	}
	late.revoke() // twice is harmless
	early.revoke()
}

// TestSessionsConcurrently is for the race detector: sign-ins, watchers,
// revocations, listings and sweeps at once leave the maps and memdb
// agreeing.
func TestSessionsConcurrently(t *testing.T) {
	s, c := newTest(t)
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				u := fmt.Sprintf("user%d", i%7)
				sess, err := s.Create(NewSession{User: u, Key: s.KeyFor(u, fmt.Sprint(g, i)), Epoch: int64(i % 3)})
				if err != nil {
					t.Error(err)
					return
				}
				switch i % 5 {
				case 0:
					select {
					case <-sess.Revoked():
					default:
					}
				case 1:
					s.Revoke(sess.ID)
				case 2:
					s.RevokeBefore(u, 2)
				case 3:
					s.List(u)
					s.Get(sess.ID)
				case 4:
					c.Advance(time.Minute)
					s.Sweep()
				}
			}
		}()
	}
	wg.Wait()
	s.RevokeUser("") // nobody
	for i := 0; i < 7; i++ {
		s.RevokeUser(fmt.Sprintf("user%d", i))
	}
	if s.Live() != 0 || len(s.byID) != 0 || len(s.byUser) != 0 || len(s.List("")) != 0 {
		t.Fatalf("left behind: %d live, %d by ID, %d users, %d listed", s.Live(), len(s.byID), len(s.byUser), len(s.List("")))
	}
}

// TestHeapPerSession holds 100,000 sessions to the issue 16 budget of
// 1 KiB of heap each (it was 1676 B with three memdb indexes and a
// channel per session).
func TestHeapPerSession(t *testing.T) {
	if testing.Short() {
		t.Skip("100,000 sessions; not in -short")
	}
	const n = 100_000
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	s, _ := newTest(t)
	for j := 0; j < n; j++ {
		u := fmt.Sprintf("user%06d", j)
		if _, err := s.Create(NewSession{User: u, Key: s.KeyFor(u, "classmate557831"), Protocol: "imap", Remote: "192.0.2.44"}); err != nil {
			t.Fatal(err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(s)
	per := float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / n
	t.Logf("heap per live session: %.0f B", per)
	if per > 1024 {
		t.Fatalf("heap per live session %.0f B, budget 1024 B", per)
	}
}
