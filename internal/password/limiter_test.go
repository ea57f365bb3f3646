package password

import (
	"context"
	"errors"
	"runtime"
	"testing"
	"time"
)

func TestLimitsSlots(t *testing.T) {
	perHash := int64(DefaultParams.Memory) << 10
	for _, c := range []struct {
		l    Limits
		want int
	}{
		{Limits{Concurrent: 7}, 7},
		{Limits{Memory: 1}, 1}, // a budget under one hash still lets one run
		{Limits{Memory: 2 * perHash}, min(runtime.NumCPU(), 2)},
		{Limits{Memory: 1 << 40}, runtime.NumCPU()}, // never more than one per CPU
		{Limits{}, min(runtime.NumCPU(), int(DefaultHashMemory/perHash))},
	} {
		if got := c.l.Slots(); got != c.want {
			t.Errorf("%+v.Slots() = %d, want %d", c.l, got, c.want)
		}
	}
}

// TestLimiterBusyPastWait: with every slot taken, a check waits its
// bounded time and gets ErrBusy without hashing; a freed slot serves the
// next one; {SSHA} does not queue.
func TestLimiterBusyPastWait(t *testing.T) {
	l := NewLimiter(Limits{Concurrent: 1, Wait: 50 * time.Millisecond})
	h, err := HashWith("classmate", cheap)
	if err != nil {
		t.Fatal(err)
	}
	release, err := l.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Verify(context.Background(), h, "classmate"); !errors.Is(err, ErrBusy) {
		t.Fatalf("Verify with the only slot taken: %v, want ErrBusy", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := l.Verify(ctx, h, "classmate"); !errors.Is(err, context.Canceled) || errors.Is(err, ErrBusy) {
		t.Fatalf("Verify with a cancelled context: %v", err)
	}
	ssha, _ := HashSSHA("classmate")
	if err := l.Verify(context.Background(), ssha, "classmate"); err != nil {
		t.Fatalf("{SSHA} with the only slot taken: %v", err)
	}
	release()
	if err := l.Verify(context.Background(), h, "classmate"); err != nil {
		t.Fatalf("Verify after release: %v", err)
	}
	if err := l.Verify(context.Background(), h, "nope"); !errors.Is(err, ErrMismatch) {
		t.Fatalf("wrong password: %v", err)
	}
	// Verify gave its slot back both times.
	release, err = l.Acquire(context.Background())
	if err != nil {
		t.Fatalf("slot not returned: %v", err)
	}
	release()
}

// TestLimiterQueues: a check that finds every slot taken gets the slot
// freed while it waits.
func TestLimiterQueues(t *testing.T) {
	l := NewLimiter(Limits{Concurrent: 1, Wait: time.Minute})
	release, _ := l.Acquire(context.Background())
	got := make(chan error, 1)
	go func() {
		r, err := l.Acquire(context.Background())
		if err == nil {
			r()
		}
		got <- err
	}()
	release()
	if err := <-got; err != nil {
		t.Fatalf("queued Acquire: %v", err)
	}
}
