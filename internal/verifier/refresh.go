package verifier

import (
	"context"
	"strings"
	"time"
)

// Refresh notices account changes made by any process (the CLI changing a
// password next to a running server): when the store's generation moved,
// the account cache is dropped and every session made under an older
// epoch, or of an account that is gone or disabled, is revoked, which
// closes the connections it opened. It returns the sessions revoked.
func (v *Verifier) Refresh(ctx context.Context) (int, error) {
	epochs, changed, err := v.accounts.changed(ctx)
	if err != nil || !changed {
		return 0, err
	}
	n := 0
	for _, s := range v.sessions.List("") {
		if s.Epoch == 0 {
			continue // a user known only to an upstream directory
		}
		if e, ok := epochs[strings.ToLower(s.User)]; !ok || e != s.Epoch {
			if v.sessions.Revoke(s.ID) {
				n++
			}
		}
	}
	if n > 0 {
		v.audit.Info("sessions revoked after account change", "count", n)
	}
	return n, nil
}

// Reconcile is Refresh whether or not the generation moved: after
// sessions were restored from a snapshot, say.
func (v *Verifier) Reconcile(ctx context.Context) (int, error) {
	v.accounts.mu.Lock()
	v.accounts.gen = -1
	v.accounts.mu.Unlock()
	return v.Refresh(ctx)
}

// RunRefresher calls Refresh every interval until stop is closed.
func (v *Verifier) RunRefresher(interval time.Duration, stop <-chan struct{}) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			if _, err := v.Refresh(context.Background()); err != nil {
				v.audit.Error("refreshing accounts", "err", err)
			}
		}
	}
}
