package verifier

import (
	"testing"
	"time"
)

// TestAverageFollowsTheMedian: fed a lopsided distribution (two thirds at
// 500 ms, a third at 1 s, as a timer-driven upstream answers), the
// pacer's target settles near the median, 500 ms, not the mean.
func TestAverageFollowsTheMedian(t *testing.T) {
	var a average
	a.add(50 * time.Millisecond) // a first guess far off
	for i := 0; i < 600; i++ {
		d := 500 * time.Millisecond
		if i%3 == 2 {
			d = time.Second
		}
		a.add(d)
	}
	got := time.Duration(a.ns.Load())
	if got < 450*time.Millisecond || got > 560*time.Millisecond {
		t.Fatalf("target %v, want near the median 500ms", got)
	}
}

// TestSeedGivesWayToRealChecks: the start-up seed (an argon2id hash) is
// the target only until a real password check is seen; accounts with a
// fast scheme then set it.
func TestSeedGivesWayToRealChecks(t *testing.T) {
	var p pacer
	p.localSeed.Store(int64(50 * time.Millisecond))
	if got := p.target(false); got != 50*time.Millisecond {
		t.Fatalf("before any check: %v, want the seed", got)
	}
	p.observe(false, false, 100*time.Microsecond)
	if got := p.target(false); got != 100*time.Microsecond {
		t.Fatalf("after one fast check: %v, want 100µs", got)
	}
	p.observe(false, true, 200*time.Microsecond)
	if got := p.target(false); got != 200*time.Microsecond {
		t.Fatalf("after a wrong password: %v, want 200µs", got)
	}
	if got := p.target(true); got != 0 {
		t.Fatalf("upstream target with nothing seen: %v, want 0", got)
	}
}
