// Package history keeps each person's security history for the portal:
// the sign-in decisions on their account and the changes made to it.
// Events are queued in memory and written in batches off the answer's
// path (a full queue drops events rather than slow a sign-in; the audit
// log stays the complete record), and the store keeps the newest Keep
// per account.
package history

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/stepgate/stepgate/internal/store"
	"github.com/stepgate/stepgate/internal/verifier"
)

// Keep is how many events the store keeps per account: what the portal
// shows.
const Keep = 50

// flushEvery is how often queued events are written.
const flushEvery = time.Second

// queueSize bounds the events waiting for a write.
const queueSize = 4096

// Recorder queues events and writes them in batches.
type Recorder struct {
	st   *store.Store
	log  *slog.Logger
	q    chan store.UserEvent
	stop chan struct{}
	done sync.WaitGroup
	now  func() time.Time
}

// New starts a recorder writing to st; Close writes what is queued.
func New(st *store.Store, log *slog.Logger) *Recorder {
	r := &Recorder{st: st, log: log, q: make(chan store.UserEvent, queueSize), stop: make(chan struct{}), now: time.Now}
	r.done.Add(1)
	go r.run()
	return r
}

// Record queues e; it never blocks.
func (r *Recorder) Record(e store.UserEvent) {
	if e.At.IsZero() {
		e.At = r.now()
	}
	select {
	case r.q <- e:
	default:
	}
}

// Change queues a change made to user's account.
func (r *Recorder) Change(user, protocol, remote, what string) {
	r.Record(store.UserEvent{User: user, Kind: store.UserEventChange, Protocol: protocol, Remote: remote, Result: "done", Detail: what})
}

// Decided records a sign-in decision (verifier.Observer). Refusals before
// any decision with no account name are left to the audit log.
func (r *Recorder) Decided(a *verifier.Attempt, d *verifier.Decision) {
	if a.User == "" {
		return
	}
	r.Record(store.UserEvent{User: a.User, Kind: store.UserEventSignIn, Protocol: a.Protocol, Remote: a.Remote,
		Result: string(d.Result), Detail: string(d.Reason)})
}

// LockedOut is nothing to the history: the failures that led to it are.
func (r *Recorder) LockedOut(string) {}

func (r *Recorder) run() {
	defer r.done.Done()
	t := time.NewTicker(flushEvery)
	defer t.Stop()
	for {
		select {
		case <-r.stop:
			r.flush()
			return
		case <-t.C:
			r.flush()
		}
	}
}

// Flush writes the queued events now (tests, shutdown).
func (r *Recorder) Flush() { r.flush() }

func (r *Recorder) flush() {
	var batch []store.UserEvent
	for len(batch) < queueSize {
		select {
		case e := <-r.q:
			batch = append(batch, e)
			continue
		default:
		}
		break
	}
	if len(batch) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := r.st.AddUserEvents(ctx, batch, Keep); err != nil {
		r.log.Error("writing security history", "events", len(batch), "err", err)
	}
}

// Close writes what is queued and stops.
func (r *Recorder) Close() error {
	close(r.stop)
	r.done.Wait()
	return nil
}

// Observers fans a decision out to several observers (metrics, history).
type Observers []verifier.Observer

// Decided tells each observer.
func (os Observers) Decided(a *verifier.Attempt, d *verifier.Decision) {
	for _, o := range os {
		o.Decided(a, d)
	}
}

// LockedOut tells each observer.
func (os Observers) LockedOut(scope string) {
	for _, o := range os {
		o.LockedOut(scope)
	}
}
