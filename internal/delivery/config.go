package delivery

import (
	"errors"
	"fmt"
	"time"

	"github.com/stepgate/stepgate/internal/method"
	"github.com/stepgate/stepgate/internal/notify"
	"github.com/stepgate/stepgate/internal/sentcode"
	"github.com/stepgate/stepgate/internal/store"
)

// Config is the `delivery:` section of stepgate's configuration. Its zero
// value (no e-mail, no text messages) turns sending off; DefaultConfig
// holds the defaults the YAML is read over.
type Config struct {
	// Methods are the kinds that may receive codes: email, sms.
	Methods []store.MethodKind `yaml:"methods"`
	// RequireBackupMethod keeps two-step pending until an account has a
	// second way to get a code (another authenticator or a verified
	// method). Off by default: owners hate a backup forced on them.
	RequireBackupMethod bool `yaml:"require_backup_method"`
	// PhoneRegion lets phone numbers be given in that region's national
	// form ("GB"); empty wants +CC.
	PhoneRegion string              `yaml:"phone_region"`
	Codes       CodesConfig         `yaml:"codes"`
	Email       *notify.EmailConfig `yaml:"email"`
	SMS         *notify.SMSConfig   `yaml:"sms"`
	Alerts      notify.AlertsConfig `yaml:"alerts"`
}

// CodesConfig bounds sent codes.
type CodesConfig struct {
	Lifetime         time.Duration `yaml:"lifetime"`            // 10m
	MinInterval      time.Duration `yaml:"min_interval"`        // 60s between sends to one account
	PerHour          int           `yaml:"per_hour"`            // 5 sends to one account an hour
	PerSourcePerHour int           `yaml:"per_source_per_hour"` // 20 sends caused from one address an hour
	ConfirmLifetime  time.Duration `yaml:"confirm_lifetime"`    // 1h for the code that confirms a new method
}

// DefaultConfig is the configuration without a file: nothing is set up to
// send, every alert is on where e-mail is set up.
func DefaultConfig() Config {
	return Config{
		Methods: []store.MethodKind{store.MethodEmail, store.MethodSMS},
		Codes: CodesConfig{Lifetime: sentcode.DefaultLimits.Lifetime, MinInterval: sentcode.DefaultLimits.MinInterval,
			PerHour: sentcode.DefaultLimits.PerHour, PerSourcePerHour: sentcode.DefaultLimits.PerSourcePerHour,
			ConfirmLifetime: time.Hour},
		Alerts: notify.DefaultAlerts,
	}
}

// Enabled reports whether any way to send is set up.
func (c *Config) Enabled() bool { return c.Email != nil || c.SMS != nil }

// KeyError is a problem with one key of the delivery section.
type KeyError struct {
	Key    string // delivery.sms.webhook.url
	Reason string
}

func (e *KeyError) Error() string { return e.Key + ": " + e.Reason }

// Validate checks every value, fills in defaults for those left at zero,
// and returns all problems found, each a *KeyError naming its key
// ("delivery.email.smtp.host") and the reason.
func (c *Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, &KeyError{Key: key, Reason: fmt.Sprintf(format, args...)})
	}
	def := DefaultConfig()
	if c.Methods == nil {
		c.Methods = def.Methods
	}
	seen := map[store.MethodKind]bool{}
	for i, k := range c.Methods {
		key := fmt.Sprintf("delivery.methods[%d]", i)
		switch {
		case k != store.MethodEmail && k != store.MethodSMS:
			bad(key, "%q is not email or sms", k)
		case seen[k]:
			bad(key, "%q is given twice", k)
		}
		seen[k] = true
	}
	if c.PhoneRegion != "" && !method.ValidRegion(c.PhoneRegion) {
		bad("delivery.phone_region", "%q is not a region code such as GB, US or DE", c.PhoneRegion)
	}
	cc := &c.Codes
	dur := func(key string, v *time.Duration, d, lo, hi time.Duration) {
		if *v == 0 {
			*v = d
		}
		if *v < lo || *v > hi {
			bad(key, "%s is out of range %s to %s", *v, lo, hi)
		}
	}
	num := func(key string, v *int, d, lo, hi int) {
		if *v == 0 {
			*v = d
		}
		if *v < lo || *v > hi {
			bad(key, "%d is out of range %d to %d", *v, lo, hi)
		}
	}
	dur("delivery.codes.lifetime", &cc.Lifetime, def.Codes.Lifetime, time.Minute, time.Hour)
	dur("delivery.codes.min_interval", &cc.MinInterval, def.Codes.MinInterval, time.Second, time.Hour)
	num("delivery.codes.per_hour", &cc.PerHour, def.Codes.PerHour, 1, 100)
	num("delivery.codes.per_source_per_hour", &cc.PerSourcePerHour, def.Codes.PerSourcePerHour, 1, 100000)
	dur("delivery.codes.confirm_lifetime", &cc.ConfirmLifetime, def.Codes.ConfirmLifetime, time.Minute, 7*24*time.Hour)
	if c.Email != nil {
		c.Email.Validate("delivery.email", bad)
	}
	if c.SMS != nil {
		c.SMS.Validate("delivery.sms", bad)
	}
	return errors.Join(errs...)
}
