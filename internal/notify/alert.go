package notify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"text/template"
	"time"

	"github.com/stepgate/stepgate/internal/store"
)

// Event is a kind of security alert.
type Event string

// Events.
const (
	// EventCodeSent: a code was sent because someone signed in with the
	// right password.
	EventCodeSent Event = "code_sent"
	// EventMethodAdded: a new authenticator or delivery method works now.
	EventMethodAdded Event = "method_added"
	// EventTwoStepDisabled: two-step verification was turned off.
	EventTwoStepDisabled Event = "two_step_disabled"
	// EventLockedOut: failed sign-ins locked the account for a while.
	EventLockedOut Event = "locked_out"
	// EventRecoveryCodeUsed: a recovery code signed in.
	EventRecoveryCodeUsed Event = "recovery_code_used"
)

// Alert is one security alert to an account's owner.
type Alert struct {
	Event Event
	User  string
	// Remote is the address the sign-in came from, where there was one.
	Remote string
	// Detail says what, in words: `an authenticator "phone"`, `a phone
	// ***-***-0123`, `until 15:04 UTC`, `9 codes left`.
	Detail string
	// Skip is an address that gets no alert (the code went there itself).
	Skip string
	Time time.Time
}

// AlertsConfig turns each alert on or off; DefaultAlerts has them all on.
type AlertsConfig struct {
	CodeSent         bool `yaml:"code_sent"`
	MethodAdded      bool `yaml:"method_added"`
	TwoStepDisabled  bool `yaml:"two_step_disabled"`
	LockedOut        bool `yaml:"locked_out"`
	RecoveryCodeUsed bool `yaml:"recovery_code_used"`
}

// DefaultAlerts sends every alert.
var DefaultAlerts = AlertsConfig{CodeSent: true, MethodAdded: true, TwoStepDisabled: true, LockedOut: true, RecoveryCodeUsed: true}

func (c AlertsConfig) on(e Event) bool {
	switch e {
	case EventCodeSent:
		return c.CodeSent
	case EventMethodAdded:
		return c.MethodAdded
	case EventTwoStepDisabled:
		return c.TwoStepDisabled
	case EventLockedOut:
		return c.LockedOut
	case EventRecoveryCodeUsed:
		return c.RecoveryCodeUsed
	}
	return false
}

type alertText struct{ subject, body *template.Template }

func alertTemplate(subject, body string) alertText {
	return alertText{template.Must(template.New("subject").Parse(subject)), template.Must(template.New("body").Parse(body))}
}

const alertFooter = `
This is an automatic security alert from {{.Service}} for the account {{.User}}.
`

var alertTexts = map[Event]alertText{
	EventCodeSent: alertTemplate(`Security alert: someone signed in to {{.Service}} with your password`,
		`Someone signed in as {{.User}} with the right password {{if .Remote}}from {{.Remote}}{{else}}from an unknown address{{end}} at {{.Time}}, and a security code was sent to {{.Detail}}.

If this was you, there is nothing to do. If not, someone knows your password: change it now.
`+alertFooter),
	EventMethodAdded: alertTemplate(`Security alert: a new way to sign in to {{.Service}}`,
		`{{.Detail}} was added to {{.User}} at {{.Time}}; it can now receive or make security codes.

If you did not do this, tell your administrator at once.
`+alertFooter),
	EventTwoStepDisabled: alertTemplate(`Security alert: two-step verification is off`,
		`Two-step verification was turned off for {{.User}} at {{.Time}}. Your password alone will now be asked for where policy allows it.

If you did not ask for this, tell your administrator at once.
`+alertFooter),
	EventLockedOut: alertTemplate(`Security alert: sign-ins to {{.Service}} are paused`,
		`Too many failed sign-ins as {{.User}}: sign-ins are paused {{.Detail}}.

If these were not you, someone may be guessing your password or codes; consider changing your password.
`+alertFooter),
	EventRecoveryCodeUsed: alertTemplate(`Security alert: a recovery code was used`,
		`A recovery code signed in as {{.User}}{{if .Remote}} from {{.Remote}}{{end}} at {{.Time}}; {{.Detail}}.

If this was not you, someone has your password and your recovery codes: change your password and make new codes.
`+alertFooter),
}

// Alerter sends security alerts to the verified e-mail addresses of an
// account. Send waits for delivery (the command line); Post queues the
// alert and returns at once (the sign-in path, which must not wait for a
// mail server).
type Alerter struct {
	st      *store.Store
	email   *Channel // nil: no alerts can go out
	cfg     AlertsConfig
	service string
	log     *slog.Logger
	now     func() time.Time

	queue   chan Alert
	done    chan struct{}
	closing sync.Once
	wg      sync.WaitGroup
}

// AlerterOptions configure NewAlerter.
type AlerterOptions struct {
	Service string
	Log     *slog.Logger
	Now     func() time.Time
	// Queue is how many posted alerts may wait; more are dropped (and
	// logged). 256 when zero.
	Queue int
}

// NewAlerter returns an Alerter; email may be nil, when none is set up.
// Close it to wait for posted alerts.
func NewAlerter(st *store.Store, email *Channel, cfg AlertsConfig, o AlerterOptions) *Alerter {
	if o.Service == "" {
		o.Service = "stepgate"
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Queue <= 0 {
		o.Queue = 256
	}
	a := &Alerter{st: st, email: email, cfg: cfg, service: o.Service, log: o.Log, now: o.Now,
		queue: make(chan Alert, o.Queue), done: make(chan struct{})}
	a.wg.Add(1)
	go a.run()
	return a
}

// Enabled reports whether alerts of event are on and can be sent.
func (a *Alerter) Enabled(e Event) bool { return a != nil && a.email != nil && a.cfg.on(e) }

// ErrAlertsOff is returned by Send when the alert is turned off or no
// e-mail is set up.
var ErrAlertsOff = errors.New("alert not sent: turned off, or no e-mail delivery set up")

// Send sends al now to every verified e-mail address of its account. It
// returns how many addresses it went to.
func (a *Alerter) Send(ctx context.Context, al Alert) (int, error) {
	if !a.Enabled(al.Event) {
		return 0, ErrAlertsOff
	}
	if al.Time.IsZero() {
		al.Time = a.now()
	}
	u, err := a.st.User(ctx, al.User)
	if err != nil {
		return 0, err
	}
	ms, err := a.st.Methods(ctx, u.ID)
	if err != nil {
		return 0, err
	}
	text := alertTexts[al.Event]
	data := struct {
		Service, User, Remote, Detail, Time string
	}{a.service, u.Name, al.Remote, al.Detail, al.Time.UTC().Format(time.RFC1123)}
	subject, err := render(text.subject, data)
	if err != nil {
		return 0, err
	}
	body, err := render(text.body, data)
	if err != nil {
		return 0, err
	}
	n := 0
	var errs []error
	for _, m := range ms {
		if m.Kind != store.MethodEmail || !m.Verified || strings.EqualFold(m.Address, al.Skip) {
			continue
		}
		if err := a.email.Send(ctx, Message{To: m.Address, Subject: subject, Body: body}); err != nil {
			errs = append(errs, err)
			continue
		}
		n++
	}
	if n > 0 || len(errs) > 0 {
		a.log.Info("security alert", "event", string(al.Event), "user", u.Name, "sent", n, "failed", len(errs))
	}
	return n, errors.Join(errs...)
}

// Post queues al for sending and returns at once.
func (a *Alerter) Post(al Alert) {
	if !a.Enabled(al.Event) {
		return
	}
	if al.Time.IsZero() {
		al.Time = a.now()
	}
	select {
	case <-a.done:
		a.log.Warn("security alert dropped: shutting down", "event", string(al.Event), "user", al.User)
		return
	default:
	}
	select {
	case a.queue <- al:
	default:
		a.log.Warn("security alert dropped: queue full", "event", string(al.Event), "user", al.User)
	}
}

// UserLockedOut posts a lockout alert (verifier.LockoutNotifier).
func (a *Alerter) UserLockedOut(ctx context.Context, user string, until time.Time) {
	a.Post(Alert{Event: EventLockedOut, User: user, Detail: "until " + until.UTC().Format("15:04 MST on 2 Jan")})
}

func (a *Alerter) run() {
	defer a.wg.Done()
	for {
		select {
		case al := <-a.queue:
			a.sendPosted(al)
		case <-a.done:
			for {
				select {
				case al := <-a.queue:
					a.sendPosted(al)
				default:
					return
				}
			}
		}
	}
}

func (a *Alerter) sendPosted(al Alert) {
	// Bounded by the channel's own timeouts and retries.
	if _, err := a.Send(context.Background(), al); err != nil {
		a.log.Error("security alert not sent", "event", string(al.Event), "user", al.User, "err", err)
	}
}

// Close sends what was posted and stops.
func (a *Alerter) Close() error {
	a.closing.Do(func() { close(a.done) })
	a.wg.Wait()
	return nil
}

// Describe names a delivery method for an alert: "a phone ***-***-0123".
func Describe(kind store.MethodKind, address string) string {
	if kind == store.MethodSMS {
		return fmt.Sprintf("the phone %s", MaskPhone(address))
	}
	return fmt.Sprintf("the e-mail address %s", MaskEmail(address))
}
