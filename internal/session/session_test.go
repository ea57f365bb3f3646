package session

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time          { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func newTest(t testing.TB) (*Store, *clock) {
	t.Helper()
	c := &clock{t: time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)}
	s, err := New(Config{HashKey: bytes.Repeat([]byte{7}, 32), Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	return s, c
}

func TestCreateLookup(t *testing.T) {
	s, _ := newTest(t)
	// Names come canonical (package username); the verifier folds case.
	k := s.KeyFor("alice", "classmate557831")
	if k != s.KeyFor("alice", "classmate557831") {
		t.Fatal("key is not stable")
	}
	if k == s.KeyFor("alice", "classmate557832") || k == s.KeyFor("bob", "classmate557831") {
		t.Fatal("different strings or users share a key")
	}
	if _, ok := s.Lookup("alice", k); ok {
		t.Fatal("hit before create")
	}
	sess, err := s.Create(NewSession{User: "alice", Key: k, Protocol: "ldap", Remote: "127.0.0.1", Epoch: 3, PasswordLen: 9})
	if err != nil {
		t.Fatal(err)
	}
	got, ok := s.Lookup("alice", k)
	if !ok || got.ID != sess.ID || got.Epoch != 3 || got.PasswordLen != 9 {
		t.Fatalf("lookup = %+v, %v", got, ok)
	}
	if _, ok := s.Lookup("bob", k); ok {
		t.Fatal("another user's name hit alice's session")
	}
	again, _ := s.Create(NewSession{User: "alice", Key: k, Protocol: "imap", Epoch: 3})
	if again.ID != sess.ID || s.Live() != 1 {
		t.Fatalf("second create made a second session (%d live)", s.Live())
	}
	// A create under a newer epoch replaces the dead session.
	newer, _ := s.Create(NewSession{User: "alice", Key: k, Epoch: 4})
	if newer.ID == sess.ID || s.Live() != 1 {
		t.Fatal("create under a new epoch kept the old session")
	}
	select {
	case <-sess.Revoked():
	default:
		t.Fatal("replaced session not marked revoked")
	}
}

func TestIdleAndAbsoluteExpiry(t *testing.T) {
	s, c := newTest(t)
	k := s.KeyFor("alice", "x")
	s.Create(NewSession{User: "alice", Key: k})
	// Sliding: used every 20 minutes, it lives past 30.
	for i := 0; i < 5; i++ {
		c.Advance(20 * time.Minute)
		if _, ok := s.Lookup("alice", k); !ok {
			t.Fatalf("session gone after %d uses 20 min apart", i+1)
		}
	}
	c.Advance(30 * time.Minute)
	if _, ok := s.Lookup("alice", k); ok {
		t.Fatal("session alive after 30 idle minutes")
	}
	if s.Sweep() != 1 || s.Live() != 0 {
		t.Fatal("sweep did not drop the idle session")
	}

	s.Create(NewSession{User: "alice", Key: k})
	for elapsed := time.Duration(0); elapsed < DefaultAbsolute-time.Hour; elapsed += 25 * time.Minute {
		c.Advance(25 * time.Minute)
		if _, ok := s.Lookup("alice", k); !ok {
			t.Fatalf("session gone after %v of steady use", elapsed)
		}
	}
	c.Advance(2 * time.Hour)
	if _, ok := s.Lookup("alice", k); ok {
		t.Fatal("session alive past the absolute expiry")
	}
}

func TestRevoke(t *testing.T) {
	s, _ := newTest(t)
	a1, _ := s.Create(NewSession{User: "alice", Key: s.KeyFor("alice", "1"), Epoch: 1})
	a2, _ := s.Create(NewSession{User: "alice", Key: s.KeyFor("alice", "2"), Epoch: 2})
	b, _ := s.Create(NewSession{User: "bob", Key: s.KeyFor("bob", "1"), Epoch: 1})
	if n := len(s.List("")); n != 3 {
		t.Fatalf("List all = %d", n)
	}
	if n := len(s.List("Alice")); n != 2 {
		t.Fatalf("List alice = %d", n)
	}
	if n := s.RevokeBefore("alice", 2); n != 1 {
		t.Fatalf("RevokeBefore = %d", n)
	}
	select {
	case <-a1.Revoked():
	default:
		t.Fatal("a1 not revoked")
	}
	if !s.Revoke(b.ID) || s.Revoke(b.ID) {
		t.Fatal("Revoke by id: first should work, second not")
	}
	if s.RevokeUser("alice") != 1 {
		t.Fatal("RevokeUser")
	}
	<-a2.Revoked()
	if s.Live() != 0 {
		t.Fatalf("%d live after revoking all", s.Live())
	}
}

func TestLockout(t *testing.T) {
	s, c := newTest(t)
	key := UserKey("alice")
	for i := 1; i <= 4; i++ {
		if _, locked := s.Fail(key); locked {
			t.Fatalf("locked after %d failures", i)
		}
	}
	until, locked := s.Fail(key)
	if !locked || until.Sub(c.Now()) != 5*time.Minute {
		t.Fatalf("5th failure: locked=%v until +%v", locked, until.Sub(c.Now()))
	}
	if _, ok := s.Locked(UserKey("alice")); !ok {
		t.Fatal("not locked")
	}
	c.Advance(5 * time.Minute)
	if _, ok := s.Locked(key); ok {
		t.Fatal("still locked after 5 minutes")
	}
	// Next lockouts double: 10, 20, 40, then capped at 60 minutes.
	for _, want := range []time.Duration{10, 20, 40, 60, 60} {
		for i := 0; i < 5; i++ {
			until, locked = s.Fail(key)
		}
		if !locked || until.Sub(c.Now()) != want*time.Minute {
			t.Fatalf("lockout = %v, want %v min", until.Sub(c.Now()), want)
		}
		c.Advance(want * time.Minute)
	}
	// A quiet hour after the lock starts the doubling over.
	c.Advance(61 * time.Minute)
	for i := 0; i < 5; i++ {
		until, _ = s.Fail(key)
	}
	if until.Sub(c.Now()) != 5*time.Minute {
		t.Fatalf("after a quiet hour: %v, want 5 min", until.Sub(c.Now()))
	}
}

func TestFailuresOutsideWindow(t *testing.T) {
	s, c := newTest(t)
	key := AddrKey("192.0.2.7")
	for i := 0; i < 20; i++ {
		if _, locked := s.Fail(key); locked {
			t.Fatalf("locked by failures 2 minutes apart (failure %d)", i+1)
		}
		c.Advance(2 * time.Minute)
		if i%2 == 1 {
			c.Advance(2 * time.Minute)
		}
	}
	s.Reset(key)
	if s.Failures(key) != 0 {
		t.Fatal("reset kept failures")
	}
	c.Advance(time.Hour)
	s.Fail(key)
	c.Advance(2 * time.Hour)
	s.Sweep()
	if s.Failures(key) != 0 {
		t.Fatal("sweep kept a stale counter")
	}
}

func TestConcurrentCreate(t *testing.T) {
	s, _ := newTest(t)
	k := s.KeyFor("alice", "pw123456")
	var wg sync.WaitGroup
	ids := make(chan string, 50)
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sess, err := s.Create(NewSession{User: "alice", Key: k})
			if err != nil {
				t.Error(err)
				return
			}
			s.Lookup("alice", k)
			ids <- sess.ID
		}()
	}
	wg.Wait()
	close(ids)
	first := <-ids
	for id := range ids {
		if id != first {
			t.Fatal("concurrent creates made more than one session")
		}
	}
}

// BenchmarkLookupHit measures the session part of a session-hit decision.
func BenchmarkLookupHit(b *testing.B) {
	s, _ := newTest(b)
	for i := 0; i < 10000; i++ {
		u := fmt.Sprintf("user%d", i)
		s.Create(NewSession{User: u, Key: s.KeyFor(u, "pw123456")})
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			u := fmt.Sprintf("user%d", i%10000)
			if _, ok := s.Lookup(u, s.KeyFor(u, "pw123456")); !ok {
				b.Fatal("miss")
			}
			i++
		}
	})
}

// BenchmarkSessionMemory reports heap bytes per live session with 100,000
// sessions (target: 1 KiB, TestHeapPerSession).
func BenchmarkSessionMemory(b *testing.B) {
	const n = 100_000
	for i := 0; i < b.N; i++ {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		s, _ := newTest(b)
		for j := 0; j < n; j++ {
			u := fmt.Sprintf("user%06d", j)
			s.Create(NewSession{User: u, Key: s.KeyFor(u, "classmate557831"), Protocol: "imap", Remote: "192.0.2.44"})
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "heapB/session")
		runtime.KeepAlive(s)
	}
}

// TestSnapshotRestoreVersion2: a snapshot written before sessions moved
// to the store still brings its sessions and lockouts back after an
// upgrade; a new snapshot holds neither (the store does).
func TestSnapshotRestoreVersion2(t *testing.T) {
	s, c := newTest(t)
	k := s.KeyFor("alice", "classmate557831")
	orig, _ := s.Create(NewSession{User: "alice", Key: k, Protocol: "imap", Remote: "192.0.2.1", Epoch: 4, PasswordLen: 9})
	s.Fail(UserKey("carol"))
	var buf bytes.Buffer
	if err := s.Snapshot(&buf); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(buf.String(), orig.ID) || strings.Contains(buf.String(), "carol") {
		t.Fatalf("a version 3 snapshot holds sessions or counters: %s", buf.String())
	}

	v2 := fmt.Sprintf(`{"version":2,"taken":%q,"sessions":[{"id":%q,"user":"alice","hash":%q,"protocol":"imap",
		"remote":"192.0.2.1","created":%q,"expires":%q,"last_used":%q,"epoch":4,"password_len":9}],
		"failures":[{"Key":"user:carol","Recent":null,"LockedUntil":%q,"Level":1}]}`,
		c.Now().Format(time.RFC3339Nano), orig.ID, base64.StdEncoding.EncodeToString(k[:]),
		orig.Created.Format(time.RFC3339Nano), orig.Expires.Format(time.RFC3339Nano), c.Now().Format(time.RFC3339Nano),
		c.Now().Add(time.Hour).Format(time.RFC3339Nano))
	c.Advance(3 * time.Minute) // the restart took a while
	s2, _ := New(Config{HashKey: bytes.Repeat([]byte{7}, 32), Now: c.Now})
	n, err := s2.Restore(strings.NewReader(v2))
	if err != nil || n != 1 {
		t.Fatalf("restored %d sessions (%v), want 1", n, err)
	}
	got, ok := s2.Lookup("alice", k)
	if !ok || got.ID != orig.ID || got.Epoch != 4 || got.PasswordLen != 9 || got.Protocol != "imap" {
		t.Fatalf("restored session = %+v, %v", got, ok)
	}
	if _, locked := s2.Locked(UserKey("carol")); !locked {
		t.Fatal("lockout lost across the upgrade")
	}
	if _, err := s2.Restore(strings.NewReader(`{"version":99}`)); err == nil {
		t.Fatal("restored a snapshot of an unknown version")
	}
}
