package session

import (
	"context"
	"time"

	memdb "github.com/hashicorp/go-memdb"

	"github.com/stepgate/stepgate/internal/store"
)

// The lockout budget of several instances: each counts its own attempts
// in memory, with the attempts in flight, as one instance does; each
// appends the failures it counted, the lockouts it started and the
// successes that reset a budget to the store's lockout log, before it
// answers; and each adds the other instances' entries to its own count
// when it admits an attempt. Attempts still being evaluated on another
// instance are not seen. So guesses that arrive one after
// another are held to the budget exactly, and a burst spread over n
// instances at the same moment can have up to n times the budget
// evaluated before every instance sees the lockout (each instance still
// holds its own share to the budget, however many arrive at once).

// remoteView is what the other instances counted for one key.
type remoteView struct {
	fails       []remoteFail // since the last lockout or success
	lockedUntil time.Time
	level       int
	resetAt     int64 // unix nanoseconds of the last success, any instance
}

// empty reports whether v holds nothing to keep.
func (v *remoteView) empty() bool {
	return v.resetAt == 0 && len(v.fails) == 0 && v.lockedUntil.IsZero() && v.level == 0
}

type remoteFail struct {
	at  int64
	str string
}

// lookBack is how far back the lockout log matters: a lockout's level
// is remembered for MaxLockout after a lockout that lasts MaxLockout.
func (l Limits) lookBack() time.Duration { return l.Window + 2*l.MaxLockout }

// lockedUntil is the later of this instance's lockout and the others'.
func (c *counter) lockedUntil() time.Time {
	if c.Remote != nil && c.Remote.lockedUntil.After(c.LockedUntil) {
		return c.Remote.lockedUntil
	}
	return c.LockedUntil
}

// remoteExtra is how many distinct failures the other instances counted
// within the window that this instance did not count itself.
func (c *counter) remoteExtra(l Limits, now time.Time) int {
	if c.Remote == nil {
		return 0
	}
	cut := now.Add(-l.Window).UnixNano()
	n := 0
	seen := map[string]bool{}
next:
	for _, f := range c.Remote.fails {
		if f.at <= cut {
			continue
		}
		if f.str != "" {
			if seen[f.str] {
				continue
			}
			seen[f.str] = true
			for i := range c.Recent {
				if sameString(c.stringAt(i), f.str) {
					continue next
				}
			}
		}
		n++
	}
	return n
}

// fetchRemote reads the other instances' entries for keys. A store that
// does not answer leaves each instance with its own budget.
func (s *Store) fetchRemote(keys []string) map[string]*remoteView {
	if s.durable == nil {
		return nil
	}
	var ks []string
	for _, k := range keys {
		if k != "" {
			ks = append(ks, k)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	events, err := s.durable.FailureEvents(ctx, ks, s.now().Add(-s.limits.lookBack()), s.instance)
	if err != nil {
		return nil
	}
	views := map[string]*remoteView{}
	for _, k := range ks {
		views[k] = &remoteView{}
	}
	for _, e := range events {
		v := views[e.Key]
		if v == nil {
			continue
		}
		switch e.Kind {
		case store.FailureReset:
			v.fails, v.level, v.lockedUntil, v.resetAt = nil, 0, time.Time{}, e.At.UnixNano()
		case store.FailureFail:
			v.fails = append(v.fails, remoteFail{at: e.At.UnixNano(), str: e.Str})
		case store.FailureLock:
			v.fails = nil
			if e.Until.After(v.lockedUntil) {
				v.lockedUntil = e.Until
			}
			v.level = max(v.level, e.Level)
		}
	}
	return views
}

// setRemote stores v as key's view of the other instances.
func (s *Store) setRemote(txn *memdb.Txn, key string, v *remoteView, now time.Time) {
	c := &counter{Key: key}
	if raw, err := txn.First(tableFailures, "id", key); err == nil && raw != nil {
		*c = *raw.(*counter)
	}
	if v.empty() {
		if c.Remote == nil {
			return
		}
		v = nil
	}
	c.Remote = v
	txn.Insert(tableFailures, c)
}

// record appends what happened to c to the store's lockout log.
func (s *Store) record(c *counter, now time.Time, str string, counted, locked, reset bool) {
	if s.durable == nil {
		return
	}
	var events []store.FailureEvent
	e := store.FailureEvent{Key: c.Key, Instance: s.instance, At: now}
	if reset {
		e.Kind = store.FailureReset
		events = append(events, e)
	}
	if counted {
		e.Kind, e.Str = store.FailureFail, str
		events = append(events, e)
	}
	if locked {
		e.Kind, e.Str, e.Until, e.Level = store.FailureLock, "", c.LockedUntil, c.Level
		events = append(events, e)
	}
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	// Not written, the failure still counts here; the other instances
	// miss it (a store down leaves each instance its own budget).
	s.durable.RecordFailures(ctx, events)
}
