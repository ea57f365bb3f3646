package session

import (
	"bytes"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestSentCodeOnceAndExpiry(t *testing.T) {
	s, c := newTest(t)
	now := c.Now()
	put := func(hash string) {
		t.Helper()
		if err := s.PutSentCode(SentCode{Hash: hash, User: "Alice", Epoch: 3, Created: now, Expires: now.Add(10 * time.Minute)}); err != nil {
			t.Fatal(err)
		}
	}
	put("h1")
	put("h2")
	if err := s.PutSentCode(SentCode{Hash: "h1", User: "alice", Created: now, Expires: now.Add(time.Minute)}); err != ErrCodeExists {
		t.Fatalf("same hash twice: err = %v, want ErrCodeExists", err)
	}
	if got, ok := s.SentCodeFor("alice", "h1"); !ok || got.Epoch != 3 {
		t.Fatalf("SentCodeFor = %+v, %v", got, ok)
	}
	if _, ok := s.SentCodeFor("bob", "h1"); ok {
		t.Fatal("another user's code was found")
	}
	if n := s.SentCodes("ALICE"); n != 2 {
		t.Fatalf("SentCodes = %d, want 2", n)
	}
	if !s.UseSentCode("h1") || s.UseSentCode("h1") {
		t.Fatal("a sent code was not usable exactly once")
	}
	if _, ok := s.SentCodeFor("alice", "h1"); ok {
		t.Fatal("a used code is still found")
	}
	c.Advance(10 * time.Minute)
	if _, ok := s.SentCodeFor("alice", "h2"); ok {
		t.Fatal("an expired code is found")
	}
	if s.UseSentCode("h2") {
		t.Fatal("an expired code was used")
	}
	put2 := SentCode{Hash: "h3", User: "alice", Created: c.Now(), Expires: c.Now().Add(time.Minute)}
	if err := s.PutSentCode(put2); err != nil {
		t.Fatal(err)
	}
	c.Advance(time.Minute)
	s.Sweep()
	if raw, _ := s.db.Txn(false).First(tableSentCodes, "id", "h3"); raw != nil {
		t.Fatal("the sweeper left an expired code")
	}
	put("h4")
	if n := s.DropSentCodes("alice"); n != 1 {
		t.Fatalf("DropSentCodes = %d, want 1", n)
	}
}

func TestSentCodeUsedOnceConcurrently(t *testing.T) {
	s, c := newTest(t)
	if err := s.PutSentCode(SentCode{Hash: "h", User: "alice", Created: c.Now(), Expires: c.Now().Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	var wins atomic.Int32
	var wg sync.WaitGroup
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if s.UseSentCode("h") {
				wins.Add(1)
			}
		}()
	}
	wg.Wait()
	if wins.Load() != 1 {
		t.Fatalf("%d attempts used one code", wins.Load())
	}
}

func TestTakeSend(t *testing.T) {
	s, c := newTest(t)
	user := []Budget{{Key: "user:alice", Max: 1, Window: time.Minute}, {Key: "user:alice", Max: 5, Window: time.Hour}}
	src := Budget{Key: "addr:192.0.2.7", Max: 7, Window: time.Hour}
	take := func(b ...Budget) bool { return s.TakeSend(b...) }
	sent := 0
	for i := 0; i < 20; i++ {
		if take(append(user, src)...) {
			sent++
		}
		c.Advance(20 * time.Second)
	}
	// 20 tries over 400 s, one a minute at most: 7 (at 0, 60, ... 360 s)
	// were allowed by the minute budget, 5 by the hour budget.
	if sent != 5 {
		t.Fatalf("%d sends allowed, want 5", sent)
	}
	// A refused send spends nothing: the source budget counted 5, not 20.
	bob := []Budget{{Key: "user:bob", Max: 5, Window: time.Hour}, src}
	if !take(bob...) || !take(bob...) || take(bob...) {
		t.Fatal("the source budget did not allow exactly 2 more sends")
	}
	// An hour later the budgets are whole again, and the sweeper forgets them.
	c.Advance(time.Hour)
	s.Sweep()
	n := 0
	it, _ := s.db.Txn(false).Get(tableSendLog, "id")
	for raw := it.Next(); raw != nil; raw = it.Next() {
		n++
	}
	if n != 0 {
		t.Fatalf("%d send logs left after their windows", n)
	}
	if !take(append(user, src)...) {
		t.Fatal("a send an hour later was refused")
	}
	if take(Budget{Key: "x", Max: 0, Window: time.Hour}) {
		t.Fatal("a budget of zero allowed a send")
	}
}

func TestSentCodesAndBudgetsSurviveASnapshot(t *testing.T) {
	s, c := newTest(t)
	now := c.Now()
	if err := s.PutSentCode(SentCode{Hash: "live", User: "alice", Epoch: 2, Created: now, Expires: now.Add(10 * time.Minute)}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutSentCode(SentCode{Hash: "short", User: "alice", Created: now, Expires: now.Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	perMinute := Budget{Key: "user:alice", Max: 1, Window: time.Minute}
	perHour := Budget{Key: "user:alice", Max: 5, Window: time.Hour}
	if !s.TakeSend(perMinute, perHour) {
		t.Fatal("first send refused")
	}
	var buf bytes.Buffer
	if err := s.Snapshot(&buf); err != nil {
		t.Fatal(err)
	}
	c.Advance(2 * time.Minute) // "short" expires during the restart

	s2, _ := New(Config{HashKey: bytes.Repeat([]byte{7}, 32), Now: c.Now})
	if _, err := s2.Restore(&buf); err != nil {
		t.Fatal(err)
	}
	if got, ok := s2.SentCodeFor("alice", "live"); !ok || got.Epoch != 2 {
		t.Fatalf("live sent code after restore = %+v, %v", got, ok)
	}
	if _, ok := s2.SentCodeFor("alice", "short"); ok {
		t.Fatal("an expired sent code came back")
	}
	for i := 0; i < 4; i++ {
		if !s2.TakeSend(perMinute, perHour) {
			t.Fatalf("send %d after restore refused", i+2)
		}
		c.Advance(2 * time.Minute)
	}
	if s2.TakeSend(perMinute, perHour) {
		t.Fatal("the hourly budget was refilled by the restart")
	}
}
