package notify

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/stepgate/stepgate/internal/store"
)

// Retry says how hard a Channel tries.
type Retry struct {
	// Timeout bounds one attempt.
	Timeout time.Duration
	// Retries is how many attempts follow a failed first one.
	Retries int
	// Backoff is the wait before the first retry; it doubles with each
	// further one, up to MaxBackoff.
	Backoff    time.Duration
	MaxBackoff time.Duration
}

// DefaultRetry: 10 s an attempt, 2 retries after 1 s and 2 s.
var DefaultRetry = Retry{Timeout: 10 * time.Second, Retries: 2, Backoff: time.Second, MaxBackoff: 30 * time.Second}

// Channel delivers messages of one kind (e-mail or text) through one
// transport, retrying temporary failures with backoff. Failures are
// logged with the recipient masked and without the message.
type Channel struct {
	kind  store.MethodKind
	name  string // the transport, for logs: smtp, webhook, command
	t     Transport
	retry Retry
	log   *slog.Logger
}

// NewChannel returns a Channel for kind over t; name names t in logs.
func NewChannel(kind store.MethodKind, name string, t Transport, r Retry, log *slog.Logger) *Channel {
	if r.Timeout <= 0 {
		r.Timeout = DefaultRetry.Timeout
	}
	if r.Retries < 0 {
		r.Retries = 0
	}
	if r.MaxBackoff < r.Backoff {
		r.MaxBackoff = r.Backoff
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Channel{kind: kind, name: name, t: t, retry: r, log: log}
}

// Kind is the kind of address the channel delivers to.
func (c *Channel) Kind() store.MethodKind { return c.kind }

// Send delivers m, trying again after temporary failures until the
// retries or ctx run out. The error it returns is scrubbed of m's
// secrets and recipient, like the log lines.
func (c *Channel) Send(ctx context.Context, m Message) error {
	to := Mask(c.kind, m.To)
	wait := c.retry.Backoff
	var last string
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, c.retry.Timeout)
		err := c.t.Deliver(actx, c.kind, m)
		cancel()
		if err == nil {
			if attempt > 1 {
				c.log.Info("message delivered after retries", "channel", string(c.kind), "transport", c.name, "to", to, "attempt", attempt)
			}
			return nil
		}
		last = scrub(err.Error(), c.kind, m)
		permanent := IsPermanent(err)
		final := permanent || attempt > c.retry.Retries || ctx.Err() != nil
		c.log.Warn("message delivery failed", "channel", string(c.kind), "transport", c.name, "to", to,
			"attempt", attempt, "final", final, "permanent", permanent, "err", last)
		if final {
			return fmt.Errorf("%s via %s to %s: %d attempt(s): %s", c.kind, c.name, to, attempt, last)
		}
		if err := sleep(ctx, wait); err != nil {
			return fmt.Errorf("%s via %s to %s: %d attempt(s), then %w: %s", c.kind, c.name, to, attempt, err, last)
		}
		wait = min(wait*2, c.retry.MaxBackoff)
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
