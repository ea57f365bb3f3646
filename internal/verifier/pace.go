package verifier

import (
	"context"
	"sync/atomic"
	"time"
)

// pacer makes every failure that an attacker could learn from take as
// long as a password check. Unknown users, rejected names, wrong codes
// and password-only attempts do no password check at all (the cheap side:
// a decoy hash would spend CPU and memory on every guess), so without it
// they would answer in microseconds where a wrong password with the right
// code costs a hash or an upstream round trip. The delay is a sleep, not
// work: it holds a goroutine, not a CPU.
//
// The target is a moving average of the password checks that actually
// ran, one for local hashes and one for upstream backends (an LDAP bind,
// an IMAP login), since the two differ by orders of magnitude. This is
// how Authelia hides which first-factor step failed.
type pacer struct {
	local, upstream atomic.Int64 // nanoseconds, exponentially weighted
}

// maxPace bounds the delay, so that a slow upstream (timeouts are not
// observed, but a crawling one is) cannot make failures hang.
const maxPace = 2 * time.Second

// observe feeds one password check that ran to its end (right or wrong
// password; not an unreachable backend) into the average.
func (p *pacer) observe(upstream bool, d time.Duration) {
	avg := &p.local
	if upstream {
		avg = &p.upstream
	}
	for {
		old := avg.Load()
		next := int64(d)
		if old != 0 {
			next = old + (int64(d)-old)/8
		}
		if avg.CompareAndSwap(old, next) {
			return
		}
	}
}

func (p *pacer) target(upstream bool) time.Duration {
	avg := &p.local
	if upstream {
		avg = &p.upstream
	}
	return min(time.Duration(avg.Load()), maxPace)
}

// paced reports whether a decision's reason must not be told apart by
// its timing. Lockouts may say so and come fast; an empty password is
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
