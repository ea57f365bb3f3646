// Package loadgen is the load generator behind `make bench`: a number of
// worker connections run one operation in a loop, bounded in time and in
// count, and the result says how many succeeded, how fast, and with which
// latencies.
package loadgen

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Worker is one connection's operation. Op is called with the number of
// the operation (0, 1, ... across all workers); an error counts as a
// failure, not a stop. Close releases the connection.
type Worker struct {
	Op    func(n int) error
	Close func()
}

// Options bound a run.
type Options struct {
	// Conns is the number of workers (client connections).
	Conns int
	// Duration and Max bound the run: it stops at whichever comes first.
	// Max <= 0 means no count bound.
	Duration time.Duration
	Max      int
}

// Result is what a run measured.
type Result struct {
	Conns    int
	OK       int
	Failures int
	Elapsed  time.Duration
	P50, P99 time.Duration
	// FirstError is the first failure, for the report.
	FirstError error
}

// Rate is successful operations per second.
func (r Result) Rate() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.OK) / r.Elapsed.Seconds()
}

// SuccessRate is the share of operations that succeeded.
func (r Result) SuccessRate() float64 {
	if n := r.OK + r.Failures; n > 0 {
		return float64(r.OK) / float64(n)
	}
	return 0
}

func (r Result) String() string {
	return fmt.Sprintf("%d conns: %.0f ok/s, %d ok, %d failed, p50 %s, p99 %s", r.Conns, r.Rate(), r.OK, r.Failures,
		r.P50.Round(time.Microsecond), r.P99.Round(time.Microsecond))
}

// Run starts o.Conns workers made by newWorker (all before the clock
// starts) and runs them until the duration or the count is reached.
func Run(ctx context.Context, o Options, newWorker func(i int) (Worker, error)) (Result, error) {
	if o.Conns < 1 || o.Duration <= 0 {
		return Result{}, errors.New("loadgen: need at least one connection and a duration")
	}
	workers := make([]Worker, 0, o.Conns)
	defer func() {
		for _, w := range workers {
			if w.Close != nil {
				w.Close()
			}
		}
	}()
	for i := 0; i < o.Conns; i++ {
		w, err := newWorker(i)
		if err != nil {
			return Result{}, fmt.Errorf("loadgen: worker %d: %w", i, err)
		}
		workers = append(workers, w)
	}
	ctx, cancel := context.WithTimeout(ctx, o.Duration)
	defer cancel()
	var next atomic.Int64
	var mu sync.Mutex
	var lat []time.Duration
	res := Result{Conns: o.Conns}
	var wg sync.WaitGroup
	start := time.Now()
	for _, w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			ok, failed := 0, 0
			var firstErr error
			for ctx.Err() == nil {
				n := int(next.Add(1) - 1)
				if o.Max > 0 && n >= o.Max {
					break
				}
				t0 := time.Now()
				err := w.Op(n)
				// Every operation's latency counts: a refusal takes time
				// too, and failure measurements are about that.
				mine = append(mine, time.Since(t0))
				if err != nil {
					failed++
					if firstErr == nil {
						firstErr = err
					}
					continue
				}
				ok++
			}
			mu.Lock()
			lat = append(lat, mine...)
			res.OK += ok
			res.Failures += failed
			if res.FirstError == nil {
				res.FirstError = firstErr
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	res.Elapsed = time.Since(start)
	slices.Sort(lat)
	if len(lat) > 0 {
		res.P50 = lat[len(lat)*50/100]
		res.P99 = lat[min(len(lat)-1, len(lat)*99/100)]
	}
	return res, nil
}
