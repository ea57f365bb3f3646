package session

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestAdmitHoldsSlots: attempts in flight count against the budget, so
// 64 at once let exactly MaxFailures through, and their failures lock.
func TestAdmitHoldsSlots(t *testing.T) {
	s, c := newTest(t)
	user, addr := UserKey("alice"), AddrKey("192.0.2.7")
	var admitted atomic.Int32
	held := make(chan *Admission, 64)
	var wg sync.WaitGroup
	for i := 0; i < 64; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if a, ok := s.Admit(user, addr); ok {
				admitted.Add(1)
				held <- a
			}
		}()
	}
	wg.Wait()
	close(held)
	if n := admitted.Load(); n != int32(DefaultLimits.MaxFailures) {
		t.Fatalf("%d of 64 admitted at once, want %d", n, DefaultLimits.MaxFailures)
	}
	var locked map[string]time.Time
	n := byte(0)
	for a := range held {
		n++
		if l := a.Done(Failed, Key{n}); l != nil { // five distinct guesses
			locked = l
		}
	}
	if len(locked) != 2 || !locked[user].Equal(c.Now().Add(5*time.Minute)) {
		t.Fatalf("the fifth failure locked %v, want both keys for 5 minutes", locked)
	}
	if _, ok := s.Admit(user); ok {
		t.Fatal("admitted while locked out")
	}
}

// TestAdmitNeutralAndSuccess: a neutral end gives the slot back without a
// failure; a success forgets the failures; Done counts once.
func TestAdmitNeutralAndSuccess(t *testing.T) {
	s, _ := newTest(t)
	k := UserKey("bob")
	for i := 0; i < 20; i++ {
		a, ok := s.Admit(k)
		if !ok {
			t.Fatalf("neutral attempt %d refused", i)
		}
		a.Done(Neutral, Key{})
		a.Done(Failed, Key{}) // ignored: already done
	}
	if n := s.Failures(k); n != 0 {
		t.Fatalf("%d failures after neutral ends", n)
	}
	for i := 0; i < 4; i++ {
		a, _ := s.Admit(k)
		a.Done(Failed, Key{byte(i)})
	}
	// One slot left: a success in it forgets the four failures.
	a, ok := s.Admit(k)
	if !ok {
		t.Fatal("fifth attempt refused with four failures")
	}
	if _, ok := s.Admit(k); ok {
		t.Fatal("sixth attempt admitted while the fifth is in flight")
	}
	a.Done(Succeeded, Key{})
	if n := s.Failures(k); n != 0 {
		t.Fatalf("%d failures after a success", n)
	}
	if raw, _ := s.db.Txn(false).First(tableFailures, "id", k); raw != nil {
		t.Fatalf("an empty counter is kept: %+v", raw)
	}
}

// TestUserKeyBounded: a long or rejected name is hashed into a short key.
func TestUserKeyBounded(t *testing.T) {
	long := make([]byte, 1<<20)
	for i := range long {
		long[i] = 'a'
	}
	if k := UserKey(string(long)); len(k) > 64 {
		t.Fatalf("key of a 1 MiB name is %d bytes", len(k))
	}
	if UserKey("alice ") == UserKey("alice") {
		t.Fatal("a rejected name shares the account's counter")
	}
}

// TestStaleStringCountsOnce: a device that repeats the same wrong string
// spends one unit of the budget, however often it retries; distinct
// guesses each spend one.
func TestStaleStringCountsOnce(t *testing.T) {
	s, c := newTest(t)
	k := UserKey("carol")
	stale := Key{42}
	for i := 0; i < 50; i++ {
		a, ok := s.Admit(k)
		if !ok {
			t.Fatalf("retry %d of one stale string refused: the device locked its owner out", i)
		}
		a.Done(Failed, stale)
		c.Advance(time.Second)
	}
	if n := s.Failures(k); n != 1 {
		t.Fatalf("%d failures counted for one repeated string, want 1", n)
	}
	for i := 1; i <= 4; i++ {
		a, _ := s.Admit(k)
		a.Done(Failed, Key{byte(i)})
	}
	if _, locked := s.Locked(k); !locked {
		t.Fatal("the stale string and four distinct guesses did not lock")
	}
}
