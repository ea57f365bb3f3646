package session

import (
	"errors"
	"time"
)

// Limits is the lockout policy: MaxFailures failures within Window lock
// the key for Lockout, doubling with each further lockout up to
// MaxLockout. A quiet MaxLockout after a lock ends, or a success, starts
// the doubling over.
type Limits struct {
	MaxFailures int
	Window      time.Duration
	Lockout     time.Duration
	MaxLockout  time.Duration
}

// DefaultLimits: 5 failures in 5 minutes lock for 5 minutes, doubling to
// at most an hour.
var DefaultLimits = Limits{MaxFailures: 5, Window: 5 * time.Minute, Lockout: 5 * time.Minute, MaxLockout: time.Hour}

func (l Limits) withDefaults() (Limits, error) {
	if l == (Limits{}) {
		return DefaultLimits, nil
	}
	if l.MaxFailures < 1 || l.Window <= 0 || l.Lockout <= 0 || l.MaxLockout < l.Lockout {
		return l, errors.New("session: lockout limits need max_failures >= 1, window > 0, lockout > 0 and max_lockout >= lockout")
	}
	return l, nil
}

// counter is the failure record of one key ("user:alice", "addr:192.0.2.7").
// Records are replaced, never changed in place.
type counter struct {
	Key         string
	Recent      []int64 // unix nanoseconds of the last failures, at most MaxFailures
	LockedUntil time.Time
	Level       int // lockouts in a row, for the doubling
}

func (l Limits) forgettable(c *counter, now time.Time) bool {
	if now.Before(c.LockedUntil.Add(l.MaxLockout)) {
		return false
	}
	return len(c.Recent) == 0 || now.Sub(time.Unix(0, c.Recent[len(c.Recent)-1])) > l.Window
}

func (l Limits) duration(level int) time.Duration {
	d := l.Lockout
	for i := 1; i < level && d < l.MaxLockout; i++ {
		d *= 2
	}
	return min(d, l.MaxLockout)
}

// UserKey and AddrKey name failure counters.
func UserKey(user string) string { return "user:" + lower(user) }

// AddrKey names the failure counter of a source address.
func AddrKey(addr string) string { return "addr:" + addr }

func lower(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if b[j] >= 'A' && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

// Locked reports whether key is locked out now, and until when.
func (s *Store) Locked(key string) (time.Time, bool) {
	raw, err := s.db.Txn(false).First(tableFailures, "id", key)
	if err != nil || raw == nil {
		return time.Time{}, false
	}
	c := raw.(*counter)
	if s.now().Before(c.LockedUntil) {
		return c.LockedUntil, true
	}
	return time.Time{}, false
}

// Fail counts a failure against key. It reports whether this failure
// started a lockout, and until when.
func (s *Store) Fail(key string) (until time.Time, lockedNow bool) {
	now := s.now()
	txn := s.db.Txn(true)
	defer txn.Abort()
	c := &counter{Key: key}
	if raw, err := txn.First(tableFailures, "id", key); err == nil && raw != nil {
		old := raw.(*counter)
		*c = *old
		c.Recent = append([]int64(nil), old.Recent...)
	}
	if now.Before(c.LockedUntil) {
		// Already locked: failures while locked neither extend nor count.
		return c.LockedUntil, false
	}
	if !c.LockedUntil.IsZero() && now.Sub(c.LockedUntil) > s.limits.MaxLockout {
		c.Level = 0
	}
	// Keep only failures inside the window, then add this one.
	cut := now.Add(-s.limits.Window).UnixNano()
	kept := c.Recent[:0]
	for _, t := range c.Recent {
		if t > cut {
			kept = append(kept, t)
		}
	}
	c.Recent = append(kept, now.UnixNano())
	if len(c.Recent) > s.limits.MaxFailures {
		c.Recent = c.Recent[len(c.Recent)-s.limits.MaxFailures:]
	}
	if len(c.Recent) >= s.limits.MaxFailures {
		c.Level++
		c.LockedUntil = now.Add(s.limits.duration(c.Level))
		c.Recent = nil
		lockedNow = true
	}
	if err := txn.Insert(tableFailures, c); err != nil {
		return time.Time{}, false
	}
	txn.Commit()
	return c.LockedUntil, lockedNow
}

// Reset forgets the failures of key (after a success).
func (s *Store) Reset(key string) {
	// Most successes have nothing to forget: skip the write transaction,
	// which every writer in the store waits for.
	if raw, err := s.db.Txn(false).First(tableFailures, "id", key); err != nil || raw == nil {
		return
	}
	txn := s.db.Txn(true)
	defer txn.Abort()
	if _, err := txn.DeleteAll(tableFailures, "id", key); err == nil {
		txn.Commit()
	}
}

// Failures returns how many recent failures key has.
func (s *Store) Failures(key string) int {
	raw, err := s.db.Txn(false).First(tableFailures, "id", key)
	if err != nil || raw == nil {
		return 0
	}
	return len(raw.(*counter).Recent)
}
