package store

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
)

// BenchmarkConsumeStepParallel: many sign-ins recording their steps at
// once share group commits.
func BenchmarkConsumeStepParallel(b *testing.B) {
	ctx := context.Background()
	s := openTest(b, b.TempDir())
	const users = 1000
	ids := make([]int64, users)
	for i := range ids {
		name := fmt.Sprintf("u%d", i)
		s.AddUser(ctx, NewUser{Name: name, PasswordHash: "h"})
		a, err := s.AddAuthenticator(ctx, name, "app", "JBSWY3DPEHPK3PXP")
		if err != nil {
			b.Fatal(err)
		}
		ids[i] = a.ID
	}
	var n atomic.Int64
	b.SetParallelism(32)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			if err := s.ConsumeStep(ctx, ids[i%users], i); err != nil {
				b.Error(err)
			}
		}
	})
}
