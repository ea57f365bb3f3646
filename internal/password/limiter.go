package password

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"time"
)

// ErrBusy is returned by Limiter.Verify when no hashing slot came free
// within the limiter's wait: the password was not checked.
var ErrBusy = errors.New("password hashing is at capacity")

// DefaultHashMemory is the memory budget for password hashes running at
// once when none is configured.
const DefaultHashMemory = 256 << 20

// DefaultHashWait is how long a password check queues for a slot.
const DefaultHashWait = 2 * time.Second

// Limits size a Limiter.
type Limits struct {
	// Concurrent is how many hashes may run at once; 0 derives it from
	// the CPU count and Memory.
	Concurrent int
	// Memory is the budget for hashes running at once (bytes); 0 is
	// DefaultHashMemory. It is divided by DefaultParams' memory, the
	// cost of each hash stepgate writes.
	Memory int64
	// Wait is how long a check queues for a slot; 0 is DefaultHashWait.
	Wait time.Duration
}

// Slots is the number of hashes l lets run at once. Hashing is CPU work,
// so more than one per CPU only adds memory (19 MiB per argon2id hash)
// and latency; the memory budget caps it further on small machines.
func (l Limits) Slots() int {
	if l.Concurrent > 0 {
		return l.Concurrent
	}
	mem := l.Memory
	if mem <= 0 {
		mem = DefaultHashMemory
	}
	n := min(runtime.NumCPU(), int(mem/(int64(DefaultParams.Memory)<<10)))
	return max(n, 1)
}

// Limiter bounds the password hashes that run at once. Without it every
// sign-in attempt, an unknown user's too, costs a 19 MiB argon2id hash,
// and a few hundred concurrent binds take gigabytes.
type Limiter struct {
	slots chan struct{}
	wait  time.Duration
}

// NewLimiter returns a limiter sized by l.
func NewLimiter(l Limits) *Limiter {
	if l.Wait <= 0 {
		l.Wait = DefaultHashWait
	}
	return &Limiter{slots: make(chan struct{}, l.Slots()), wait: l.Wait}
}

// Slots is how many hashes may run at once.
func (l *Limiter) Slots() int { return cap(l.slots) }

// Acquire takes a slot, waiting at most the limiter's wait; the returned
// function gives it back. Past the wait it returns ErrBusy, and ctx's
// error when ctx ends first.
func (l *Limiter) Acquire(ctx context.Context) (release func(), err error) {
	select {
	case l.slots <- struct{}{}:
		return l.release, nil
	default:
	}
	t := time.NewTimer(l.wait)
	defer t.Stop()
	select {
	case l.slots <- struct{}{}:
		return l.release, nil
	case <-t.C:
		return nil, fmt.Errorf("%w: no slot free within %s (%d running)", ErrBusy, l.wait, cap(l.slots))
	case <-ctx.Done():
		return nil, fmt.Errorf("waiting for a password hashing slot: %w", ctx.Err())
	}
}

func (l *Limiter) release() { <-l.slots }

// Verify is Verify under the limiter. {SSHA} costs a microsecond and a
// few bytes, so it does not queue behind the slow schemes.
func (l *Limiter) Verify(ctx context.Context, hash, pw string) error {
	if Scheme(hash) != "ssha" {
		release, err := l.Acquire(ctx)
		if err != nil {
			return err
		}
		defer release()
	}
	return Verify(hash, pw)
}
