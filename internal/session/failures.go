package session

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"time"

	"github.com/hashicorp/go-memdb"

	"github.com/stepgate/stepgate/internal/username"
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
	Key    string
	Recent []int64 // unix nanoseconds of the last failures, at most MaxFailures
	// Strings holds, beside each of Recent, a keyed hash of the string
	// that failed (or ""): a device that repeats its stale password
	// spends one unit of the budget, not all of it.
	Strings     []string `json:",omitempty"`
	LockedUntil time.Time
	Level       int // lockouts in a row, for the doubling
	// Remote is what the other instances counted for the key, as the
	// store said at the last admission.
	Remote *remoteView `json:"-"`
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

// UserKey names the failure counter of an account. name is the
// account's canonical name (package username); a name the profile
// rejected is hashed, so that the counter of a megabyte-long bind name
// costs what any other costs.
func UserKey(name string) string {
	if _, err := username.Canonical(name); err != nil {
		sum := sha256.Sum256([]byte(name))
		return "user!" + hex.EncodeToString(sum[:16])
	}
	return "user:" + name
}

// AddrKey names the failure counter of a source address.
func AddrKey(addr string) string { return "addr:" + addr }

// Locked reports whether key is locked out now, and until when.
func (s *Store) Locked(key string) (time.Time, bool) {
	raw, err := s.db.Txn(false).First(tableFailures, "id", key)
	if err != nil || raw == nil {
		return time.Time{}, false
	}
	c := raw.(*counter)
	if until := c.lockedUntil(); s.now().Before(until) {
		return until, true
	}
	return time.Time{}, false
}

// Fail counts a failure against key outside any admission (a sign-in
// step that has no attempt of its own, such as a method confirmation). It
// reports whether this failure started a lockout, and until when.
func (s *Store) Fail(key string) (until time.Time, lockedNow bool) {
	now := s.now()
	txn := s.db.Txn(true)
	defer txn.Abort()
	c := s.current(txn, key, now)
	until, lockedNow, counted := s.count(c, now, "")
	if err := txn.Insert(tableFailures, c); err != nil {
		return time.Time{}, false
	}
	txn.Commit()
	s.record(c, now, "", counted, lockedNow, false)
	return until, lockedNow
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

// FailedRecently reports whether the string whose session key is str
// failed for key within the window: a device repeating its stale password
// is answered from memory, without another evaluation or another unit of
// the budget.
func (s *Store) FailedRecently(key string, str Key) bool {
	raw, err := s.db.Txn(false).First(tableFailures, "id", key)
	if err != nil || raw == nil {
		return false
	}
	c := raw.(*counter)
	h := failedString(str) + memorable
	cut := s.now().Add(-s.limits.Window).UnixNano()
	for i, t := range c.Recent {
		if t > cut && c.stringAt(i) == h {
			return true
		}
	}
	return false
}

// ForgetStrings drops what key's failures remember of their strings,
// keeping the count: after an account changes (enabled, new password), a
// string that failed before may be right now.
func (s *Store) ForgetStrings(key string) {
	raw, err := s.db.Txn(false).First(tableFailures, "id", key)
	if err != nil || raw == nil || len(raw.(*counter).Strings) == 0 {
		return
	}
	txn := s.db.Txn(true)
	defer txn.Abort()
	raw, err = txn.First(tableFailures, "id", key)
	if err != nil || raw == nil {
		return
	}
	c := *raw.(*counter)
	c.Strings = make([]string, len(c.Recent))
	if txn.Insert(tableFailures, &c) == nil {
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

// Outcome is how an admitted attempt ended, for its budget.
type Outcome int

// Outcomes.
const (
	// Neutral: neither a success nor a guess (the backend was down, or
	// the right password earned a sent code). The slot is given back.
	Neutral Outcome = iota
	// Failed: a wrong guess; it is counted and may start a lockout.
	Failed
	// Succeeded: the budget is forgotten.
	Succeeded
	// Final: a failure the same string can never get past while it is
	// remembered (see Done).
	Final
)

// Admission is an attempt's hold on the budgets of its keys, taken by
// Admit before anything is checked and given back by Done.
type Admission struct {
	s    *Store
	keys []string
	buf  [2]string // keys' room for a user and an address: no allocation
	done bool
}

// Admit takes one slot in the budget of every key for an attempt that is
// about to be evaluated. It refuses (ok false) when any key is locked out
// or when its recent failures plus the attempts already in flight fill its
// budget: with a budget of 5, at most 5 guesses are evaluated per window,
// however many arrive at once. Empty keys are skipped.
//
// The attempts in flight are counted beside memdb, under s.admitMu, not
// in the counters: a key without failures (nearly every sign-in) then
// costs no memdb write transaction, neither here nor in Done.
func (s *Store) Admit(keys ...string) (adm *Admission, ok bool) {
	if s.lockedHere(keys) {
		// Known locked: a flood of attempts while locked out costs no
		// read of the store.
		return nil, false
	}
	views := s.fetchRemote(keys)
	s.admitMu.Lock()
	defer s.admitMu.Unlock()
	now := s.now()
	write := false
	txn := s.db.Txn(false)
	for k, v := range views {
		if !v.empty() {
			write = true
		} else if raw, err := txn.First(tableFailures, "id", k); err == nil && raw != nil && raw.(*counter).Remote != nil {
			write = true
		}
	}
	if write {
		txn = s.db.Txn(true)
		defer txn.Abort()
		for k, v := range views {
			s.setRemote(txn, k, v, now)
		}
	}
	refused := false
	for _, k := range keys {
		if k == "" {
			continue
		}
		used := s.inflight[k]
		if raw, err := txn.First(tableFailures, "id", k); err == nil && raw != nil {
			c := s.current(txn, k, now)
			if now.Before(c.lockedUntil()) {
				refused = true
			}
			used += len(c.Recent) + c.remoteExtra(s.limits, now)
		}
		if used >= s.limits.MaxFailures {
			refused = true
		}
	}
	if write {
		// The other instances' failures and lockouts are kept even when
		// refused: the lockout message says until when.
		txn.Commit()
	}
	if refused {
		return nil, false
	}
	adm = &Admission{s: s}
	adm.keys = adm.buf[:0]
	for _, k := range keys {
		if k != "" {
			s.inflight[k]++
			adm.keys = append(adm.keys, k)
		}
	}
	return adm, true
}

// lockedHere reports whether any of keys is locked out as far as this
// instance knows (its own lockout, or another instance's that it read).
func (s *Store) lockedHere(keys []string) bool {
	txn := s.db.Txn(false)
	now := s.now()
	for _, k := range keys {
		if k == "" {
			continue
		}
		if raw, err := txn.First(tableFailures, "id", k); err == nil && raw != nil && now.Before(raw.(*counter).lockedUntil()) {
			return true
		}
	}
	return false
}

// current returns a copy of key's counter with the failures that fell
// out of the window dropped, ready to be changed and inserted.
func (s *Store) current(txn *memdb.Txn, key string, now time.Time) *counter {
	c := &counter{Key: key}
	if raw, err := txn.First(tableFailures, "id", key); err == nil && raw != nil {
		old := raw.(*counter)
		*c = *old
	}
	cut := now.Add(-s.limits.Window).UnixNano()
	if c.Remote != nil && c.Remote.resetAt > cut {
		// A success on another instance forgave what came before it.
		cut = c.Remote.resetAt
	}
	kept := make([]int64, 0, len(c.Recent)+1)
	strs := make([]string, 0, len(c.Recent)+1)
	for i, t := range c.Recent {
		if t > cut {
			kept = append(kept, t)
			strs = append(strs, c.stringAt(i))
		}
	}
	c.Recent, c.Strings = kept, strs
	return c
}

// failedString is how a failed string is kept beside its failure: half
// of its session key (itself a keyed hash), enough to tell strings apart.
func failedString(str Key) string { return hex.EncodeToString(str[:16]) }

// memorable marks a kept string whose failure cannot turn into a success
// while it is remembered (a wrong password or code, an unknown name), so
// that FailedRecently may answer it from memory.
const memorable = "!"

func sameString(a, b string) bool {
	return strings.TrimSuffix(a, memorable) == strings.TrimSuffix(b, memorable)
}

// stringAt is the hash beside Recent[i]; counters from before hashes
// were kept have none.
func (c *counter) stringAt(i int) string {
	if i < len(c.Strings) {
		return c.Strings[i]
	}
	return ""
}

// Done gives the attempt's slots back. A failure is counted against every
// key, unless the same string (str, the attempt's session key) already
// failed for that key within the window: only distinct guesses use the
// budget. A Final failure (a wrong password or code, an unknown name:
// nothing that a later attempt with the same string could get past) is
// also remembered for FailedRecently. locked lists the keys this failure
// locked out, with the time the lockout ends. Done is safe to call more
// than once; only the first counts.
func (a *Admission) Done(o Outcome, str Key) (locked map[string]time.Time) {
	if a == nil || a.done {
		return nil
	}
	a.done = true
	s := a.s
	s.admitMu.Lock()
	unlocked := false
	unlock := func() {
		if !unlocked {
			unlocked = true
			s.admitMu.Unlock()
		}
	}
	defer unlock() // a panic must not hold every admission
	for _, k := range a.keys {
		if n := s.inflight[k]; n > 1 {
			s.inflight[k] = n - 1
		} else {
			delete(s.inflight, k)
		}
	}
	if o == Neutral {
		return nil // the slot alone is given back; current trims on every read
	}
	now := s.now()
	var txn *memdb.Txn
	type note struct {
		c                        *counter
		str                      string
		counted, lockedNow, rset bool
	}
	var notes []note
	for _, k := range a.keys {
		if o == Succeeded {
			// Most successes have nothing to forget: no write transaction.
			raw, err := s.db.Txn(false).First(tableFailures, "id", k)
			if err != nil || raw == nil {
				continue
			}
		}
		if txn == nil {
			txn = s.db.Txn(true)
			defer txn.Abort()
		}
		c := s.current(txn, k, now)
		switch o {
		case Succeeded:
			if len(c.Recent) > 0 || c.Level > 0 || (c.Remote != nil && (len(c.Remote.fails) > 0 || c.Remote.level > 0)) {
				notes = append(notes, note{c: c, rset: true})
			}
			c.Recent, c.Strings, c.LockedUntil, c.Level = nil, nil, time.Time{}, 0
			if c.Remote != nil {
				c.Remote = &remoteView{resetAt: now.UnixNano()}
			}
		case Failed, Final:
			h := failedString(str)
			if o == Final {
				h += memorable
			}
			until, lockedNow, counted := s.count(c, now, h)
			if lockedNow {
				if locked == nil {
					locked = map[string]time.Time{}
				}
				locked[k] = until
			}
			notes = append(notes, note{c: c, str: h, counted: counted, lockedNow: lockedNow})
		}
		var err error
		if len(c.Recent) == 0 && c.LockedUntil.IsZero() && c.Level == 0 && c.Remote == nil {
			_, err = txn.DeleteAll(tableFailures, "id", k)
		} else {
			err = txn.Insert(tableFailures, c)
		}
		if err != nil {
			return nil
		}
	}
	if txn != nil {
		txn.Commit()
	}
	// The lockout log is written outside the lock: other admissions must
	// not wait for the store.
	unlock()
	for _, n := range notes {
		s.record(n.c, now, n.str, n.counted, n.lockedNow, n.rset)
	}
	return locked
}

// count adds one failure at now, of the string hashed as str ("" for none),
// to c, which current has trimmed to the window, and reports whether it
// started a lockout and whether it was counted. The other instances'
// failures count towards the lockout, and a string that failed there is
// not counted again here.
func (s *Store) count(c *counter, now time.Time, str string) (until time.Time, lockedNow, counted bool) {
	if now.Before(c.lockedUntil()) {
		// Already locked: failures while locked neither extend nor count.
		return c.lockedUntil(), false, false
	}
	if str != "" {
		for i := range c.Recent {
			if sameString(c.stringAt(i), str) {
				return c.LockedUntil, false, false // the same stale string again
			}
		}
		if c.Remote != nil {
			for _, f := range c.Remote.fails {
				if sameString(f.str, str) {
					return c.LockedUntil, false, false
				}
			}
		}
	}
	if !c.LockedUntil.IsZero() && now.Sub(c.LockedUntil) > s.limits.MaxLockout {
		c.Level = 0
	}
	c.Strings = append(c.Strings[:len(c.Recent):len(c.Recent)], str)
	c.Recent = append(c.Recent, now.UnixNano())
	if n := len(c.Recent) - s.limits.MaxFailures; n > 0 {
		c.Recent, c.Strings = c.Recent[n:], c.Strings[n:]
	}
	if len(c.Recent)+c.remoteExtra(s.limits, now) >= s.limits.MaxFailures {
		if c.Remote != nil && c.Remote.level > c.Level {
			c.Level = c.Remote.level
		}
		c.Level++
		c.LockedUntil = now.Add(s.limits.duration(c.Level))
		c.Recent, c.Strings = nil, nil
		if c.Remote != nil {
			c.Remote = &remoteView{lockedUntil: c.Remote.lockedUntil, level: c.Remote.level, resetAt: c.Remote.resetAt}
		}
		return c.LockedUntil, true, true
	}
	return c.LockedUntil, false, true
}
