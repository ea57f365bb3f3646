package verifier

import (
	"context"

	"github.com/stepgate/stepgate/internal/session"
	"github.com/stepgate/stepgate/internal/username"
)

// Refresh notices account changes made by any process (the CLI changing a
// password next to a running server, another instance revoking a
// session): changed accounts are dropped from the cache, and every
// session made under an older epoch, of an account that is gone or
// disabled, or that the store no longer holds (revoked on another
// instance), is revoked here, which closes the connections it opened. It
// returns the number of sessions revoked.
func (v *Verifier) Refresh(ctx context.Context) (int, error) {
	names, full, changed, err := v.accounts.changes(ctx)
	if err != nil || !changed {
		return 0, err
	}
	var stale []*session.Session
	if full {
		stale, err = v.staleSessions(ctx, v.sessions.List(""))
		if err == nil {
			var gone []*session.Session
			gone, err = v.sessions.AllOrphans(ctx)
			stale = append(stale, gone...)
		}
	} else {
		for _, name := range names {
			// A string that failed before the change may be right now.
			if c, err := username.Canonical(name); err == nil {
				v.sessions.ForgetStrings(session.UserKey(c))
			}
			var s, gone []*session.Session
			if s, err = v.staleSessions(ctx, v.sessions.List(name)); err != nil {
				break
			}
			if gone, err = v.sessions.Orphans(ctx, name); err != nil {
				break
			}
			stale = append(stale, s...)
			stale = append(stale, gone...)
		}
	}
	if err != nil {
		return 0, err
	}
	n := 0
	for _, s := range stale {
		if v.sessions.Revoke(s.ID) {
			n++
		}
	}
	if n > 0 {
		v.audit.Info("sessions revoked after account change", "count", n)
	}
	if full {
		return n, nil
	}
	return n, v.st.PruneChanges(ctx, changeLogKeep)
}

// changeLogKeep is how much of the account change log is kept: far more
// than a server falls behind between two polls.
const changeLogKeep = 10000

// staleSessions returns those of ss whose account changed since they were
// made, is gone, or is disabled.
func (v *Verifier) staleSessions(ctx context.Context, ss []*session.Session) ([]*session.Session, error) {
	var out []*session.Session
	for _, s := range ss {
		if s.Epoch == 0 {
			continue // a user known only to an upstream directory
		}
		acct, err := v.accounts.get(ctx, s.User)
		if err != nil {
			return nil, err
		}
		if acct == nil || acct.user.Disabled || acct.user.Epoch != s.Epoch {
			out = append(out, s)
		}
	}
	return out, nil
}

// Reconcile is Refresh whether or not the generation moved: after
// sessions were restored from a snapshot, say.
func (v *Verifier) Reconcile(ctx context.Context) (int, error) {
	v.accounts.invalidate()
	return v.Refresh(ctx)
}
