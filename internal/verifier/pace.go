package verifier

import (
	"context"

	"sync/atomic"
	"time"

	"github.com/stepgate/stepgate/internal/password"
)

// pacer makes every failure that an attacker could learn from take as
// long as a password check. Unknown users, rejected names, wrong codes
// and password-only attempts do no password check at all (the cheap side:
// a decoy hash would spend CPU and memory on every guess), so without it
// they would answer in microseconds where a wrong password with the right
// code costs a hash or an upstream round trip. The delay is a sleep, not
// work: it holds a goroutine, not a CPU.
//
// The target is a moving median of the decisions that ended in a wrong
// password (the one failure that runs its password check), whole decision
// included, one for local hashes and one for upstream backends (an
// LDAP bind, an IMAP login), since the two differ by orders of magnitude,
// and an upstream may answer a wrong password more slowly than a right one
// (Dovecot waits auth_failure_delay). Until a wrong password has been
// seen, the password checks of successful sign-ins stand in. Authelia
// hides which first-factor step failed the same way.
type pacer struct {
	local, upstream averages
	// localSeed is what one hash under the default algorithm took at
	// start-up: the target for local failures until a real password
	// check has been seen (the accounts may well use a faster scheme,
	// such as {SSHA} imported from a directory).
	localSeed atomic.Int64
	// learned is set once the seed was replaced by the time of one real
	// account's hash (learn).
	learned atomic.Bool
}

// learn replaces the start-up seed, once, by the time one check of a real
// account's stored hash takes: until a password check has run, that is
// the best guess of what a wrong password costs here (a directory's
// accounts imported with {SSHA} answer in microseconds, not an
// argon2id's tens of milliseconds).
func (p *pacer) learn(hash string) {
	if p.learned.Load() || hash == "" || !p.learned.CompareAndSwap(false, true) {
		return
	}
	start := time.Now()
	password.Verify(hash, "pacer: not the password")
	p.localSeed.Store(int64(time.Since(start)))
}

type averages struct {
	failed, passed average
}

// average follows the median of the durations it is fed, in nanoseconds:
// each sample farther than a thirty-second of its value moves it that much
// towards the sample, the same step up or down, so it settles where as
// many samples fall above as below. A median, not a mean: an upstream
// that answers failures on a timer (Dovecot's half-second tick) gives a
// lopsided distribution, and it is the typical failure a paced one must
// look like. The first sample is taken as it is.
type average struct{ ns atomic.Int64 }

func (a *average) add(d time.Duration) {
	for {
		old := a.ns.Load()
		next := int64(d)
		if step := max(old/32, 1); old != 0 && int64(d) > old+step {
			next = old + step
		} else if old != 0 && int64(d) < old-step {
			next = old - step
		}
		if a.ns.CompareAndSwap(old, next) {
			return
		}
	}
}

// maxPace bounds the delay, so that a slow upstream (timeouts are not
// observed, but a crawling one is) cannot make failures hang.
const maxPace = 3 * time.Second

func (p *pacer) kind(upstream bool) *averages {
	if upstream {
		return &p.upstream
	}
	return &p.local
}

// observe feeds a wrong-password decision (wrong true) or a password check
// that passed into the averages.
func (p *pacer) observe(upstream, wrong bool, d time.Duration) {
	if k := p.kind(upstream); wrong {
		k.failed.add(d)
	} else {
		k.passed.add(d)
	}
}

func (p *pacer) target(upstream bool) time.Duration {
	k := p.kind(upstream)
	ns := k.failed.ns.Load()
	if ns == 0 {
		ns = k.passed.ns.Load()
	}
	if ns == 0 && !upstream {
		ns = p.localSeed.Load()
	}
	return min(time.Duration(ns), maxPace)
}

// paced reports whether a decision's reason must not be told apart by
// its timing. A repeat answered from memory is paced too: which failures
// are remembered depends on the reason (an unknown name's are, a known
// name's password alone is not), so a fast repeat would tell names
// apart. Lockouts may say so and come fast; an empty password is
// visible in the request; unavailable and busy are the service's state,
// not the account's.
func paced(d Decision) bool {
	if d.Allowed() {
		return false
	}
	switch d.Reason {
	case ReasonLocked, ReasonEmpty, ReasonUnavailable, ReasonBusy, ReasonError, ReasonCodeSent:
		return false

	}
	return true
}

// pace holds a failure until it has taken as long as a password check
// of the attempt's kind would.
func (v *Verifier) pace(ctx context.Context, start time.Time, a *Attempt, d Decision) {
	if !paced(d) {
		return
	}
	wait := time.Until(start.Add(v.pacer.target(a.Password != nil)))
	if wait <= 0 {
		return
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
