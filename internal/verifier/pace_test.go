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
