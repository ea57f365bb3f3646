// Package delivery assembles the "send me a code" half of two-step
// verification and the ways back in from the `delivery:` section of the
// configuration: the e-mail and text channels (notify), delivery methods
// (method), sent codes (sentcode), recovery codes (recovery) and security
// alerts, and hands the verifier its seams.
package delivery

import (
	"errors"
	"log/slog"
	"time"

	"github.com/stepgate/stepgate/internal/credential"
	"github.com/stepgate/stepgate/internal/method"
	"github.com/stepgate/stepgate/internal/notify"
	"github.com/stepgate/stepgate/internal/recovery"
	"github.com/stepgate/stepgate/internal/sentcode"
	"github.com/stepgate/stepgate/internal/session"
	"github.com/stepgate/stepgate/internal/store"
	"github.com/stepgate/stepgate/internal/verifier"
)

// Delivery is everything built from the delivery section.
type Delivery struct {
	Methods  *method.Service
	Recovery *recovery.Service
	Alerts   *notify.Alerter
	// Codes sends and checks sign-in codes; nil without a session store
	// (the command line, which only manages methods and recovery codes).
	Codes *sentcode.Service
}

// Options configure New.
type Options struct {
	// Rule is the split rule in force (two_step.digits and separator).
	Rule credential.Rule
	// Service names the service in messages (two_step.issuer).
	Service string
	// Log receives operational logs (never a code, phone numbers masked).
	Log *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// New builds the delivery of codes from a validated cfg. sessions may be
// nil on the command line. Close it to let queued alerts go out.
func New(st *store.Store, sessions *session.Store, cfg Config, o Options) (*Delivery, error) {
	if st == nil {
		return nil, errors.New("delivery: a store is required")
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	log := o.Log.With("component", "delivery")
	channels := map[store.MethodKind]*notify.Channel{}
	var templates *notify.Templates
	var err error
	subject, body, sms := "", "", ""
	if cfg.Email != nil {
		if channels[store.MethodEmail], err = cfg.Email.Channel("delivery.email", log); err != nil {
			return nil, err
		}
		subject, body = cfg.Email.Subject, cfg.Email.Body
	}
	if cfg.SMS != nil {
		if channels[store.MethodSMS], err = cfg.SMS.Channel("delivery.sms", log); err != nil {
			return nil, err
		}
		sms = cfg.SMS.Body
	}
	if templates, err = notify.ParseTemplates(subject, body, sms); err != nil {
		return nil, err
	}
	alerts := notify.NewAlerter(st, channels[store.MethodEmail], cfg.Alerts, notify.AlerterOptions{Service: o.Service, Log: log, Now: o.Now})
	d := &Delivery{
		Methods: method.New(st, channels, alerts, method.Policy{Kinds: cfg.Methods, RequireBackup: cfg.RequireBackupMethod,
			ConfirmLifetime: cfg.Codes.ConfirmLifetime, PhoneRegion: cfg.PhoneRegion},
			method.Options{Service: o.Service, Log: log, Now: o.Now}),
		Recovery: recovery.New(st, alerts, log),
		Alerts:   alerts,
	}
	if sessions != nil {
		d.Codes, err = sentcode.New(d.Methods, sessions, templates, alerts, st.Sealer().Derive("sent code"), sentcode.Options{
			Rule: o.Rule, Service: o.Service, Log: log, Now: o.Now,
			Limits: sentcode.Limits{Lifetime: cfg.Codes.Lifetime, MinInterval: cfg.Codes.MinInterval,
				PerHour: cfg.Codes.PerHour, PerSourcePerHour: cfg.Codes.PerSourcePerHour},
		})
		if err != nil {
			alerts.Close()
			return nil, err
		}
	}
	return d, nil
}

// Configure gives the verifier its seams: the sender of codes, the code
// sources (sent codes, recovery codes) and the lockout alerts.
func (d *Delivery) Configure(vc *verifier.Config) {
	if d.Codes != nil {
		vc.Sender = d.Codes
		vc.Codes = append(vc.Codes, d.Codes)
	}
	vc.Codes = append(vc.Codes, d.Recovery)
	if vc.Lockouts == nil {
		vc.Lockouts = d.Alerts
	}
}

// Close sends the alerts still queued and stops.
func (d *Delivery) Close() error { return d.Alerts.Close() }
