package loadgen

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

func TestRunCountsAndBounds(t *testing.T) {
	var calls atomic.Int64
	closed := 0
	res, err := Run(context.Background(), Options{Conns: 4, Duration: 10 * time.Second, Max: 1000}, func(int) (Worker, error) {
		return Worker{Op: func(n int) error {
			calls.Add(1)
			if n%10 == 0 {
				return errors.New("every tenth fails")
			}
			return nil
		}, Close: func() { closed++ }}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if calls.Load() != 1000 || res.OK != 900 || res.Failures != 100 || closed != 4 {
		t.Fatalf("calls %d, result %+v, closed %d", calls.Load(), res, closed)
	}
	if res.FirstError == nil || res.SuccessRate() != 0.9 || res.P99 < res.P50 {
		t.Fatalf("result %+v", res)
	}
	// The duration bounds a run without a count.
	res, err = Run(context.Background(), Options{Conns: 2, Duration: 50 * time.Millisecond}, func(int) (Worker, error) {
		return Worker{Op: func(int) error { time.Sleep(time.Millisecond); return nil }}, nil
	})
	if err != nil || res.OK == 0 || res.Elapsed > 5*time.Second {
		t.Fatalf("duration-bound run: %+v, %v", res, err)
	}
}
