package verifier

import (
	"sync"

	"github.com/stepgate/stepgate/internal/session"
)

// flights serialises attempts that carry the same user and submitted
// string. The first does the whole check and opens the session; those
// that waited then find the session and succeed without consuming the
// code again. Five connections opened at once with one new string give
// five successes and one session, not one success and four replays.
type flights struct {
	mu sync.Mutex
	m  map[session.Key]*flight
}

type flight struct {
	mu sync.Mutex
	n  int
}

func (f *flights) lock(k session.Key) (unlock func()) {
	f.mu.Lock()
	if f.m == nil {
		f.m = map[session.Key]*flight{}
	}
	fl := f.m[k]
	if fl == nil {
		fl = &flight{}
		f.m[k] = fl
	}
	fl.n++
	f.mu.Unlock()
	fl.mu.Lock()
	return func() {
		fl.mu.Unlock()
		f.mu.Lock()
		if fl.n--; fl.n == 0 {
			delete(f.m, k)
		}
		f.mu.Unlock()
	}
}
