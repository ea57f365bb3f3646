package verifier

import (
	"context"
	"log/slog"

	"github.com/stepgate/stepgate/internal/username"
)

// Refuse records a sign-in that a front end turned away before asking for
// a decision: a password in clear from afar, an authorization identity of
// someone else, credentials over the size limit. It writes the same audit
// event as Verify and is counted in the metrics, so that every refusal
// leaves exactly one trace. It counts no failure towards a lockout: no
// password was tried.
func (v *Verifier) Refuse(ctx context.Context, a Attempt, r Reason) Decision {
	sent := a.User
	if name, err := username.Canonical(a.User); err == nil {
		a.User = name
	}
	d := deny(r)
	v.record(ctx, &a, &d, sent)
	return d
}

// record writes the audit event of a decision and tells the observer;
// sent is the user name as the client sent it.
func (v *Verifier) record(ctx context.Context, a *Attempt, d *Decision, sent string) {
	attrs := []slog.Attr{
		slog.String("protocol", a.Protocol),
		slog.String("user", a.User),
	}
	if sent != a.User {
		// The form the client sent, when it is not the account's own:
		// "ＡＬＩＣＥ" or "alice@example.org" says something about who tried.
		attrs = append(attrs, slog.String("sent_name", sent))
	}
	attrs = append(attrs,
		slog.String("remote", a.Remote),
		slog.Bool("tls", a.TLS),
		slog.String("result", string(d.Result)),
		slog.String("reason", string(d.Reason)),
	)
	if d.Session != nil {
		attrs = append(attrs, slog.String("session", d.Session.SessionID()))
	}
	attrs = append(attrs, slog.Float64("ms", float64(d.Elapsed.Microseconds())/1000))
	v.audit.LogAttrs(ctx, slog.LevelInfo, "decision", attrs...)
	if v.observer != nil {
		v.observer.Decided(a, d)
	}
}
