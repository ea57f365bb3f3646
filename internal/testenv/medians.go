package testenv

import (
	"slices"
	"testing"
	"time"
)

// SameMedians fails t unless the medians of the samples, one set per
// named path, are within factor of each other: the statistical form of
// "these paths take the same time", never a bound on speed.
func SameMedians(t testing.TB, names []string, samples [][]time.Duration, factor float64) {
	t.Helper()
	medians := make([]time.Duration, len(samples))
	for i, s := range samples {
		s = slices.Clone(s)
		slices.Sort(s)
		medians[i] = s[len(s)/2]
		t.Logf("%-15s median %v over %d tries", names[i], medians[i], len(s))
	}
	lo, hi := slices.Min(medians), slices.Max(medians)
	if float64(hi) > factor*float64(lo) {
		t.Fatalf("medians %v: the slowest path is %.2fx the fastest, want at most %.1fx", medians, float64(hi)/float64(lo), factor)
	}
}
