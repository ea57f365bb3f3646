package notify

import (
	"fmt"
	"log/slog"
	"net/mail"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/stepgate/stepgate/internal/certpool"
	"github.com/stepgate/stepgate/internal/store"
)

// EmailConfig sets up e-mail: through an SMTP server, or a local command
// such as sendmail (exactly one of them).
type EmailConfig struct {
	SMTP    *SMTPConfig    `yaml:"smtp"`
	Command *CommandConfig `yaml:"command"`
	// From is the sender ("stepgate <noreply@example.org>").
	From string `yaml:"from"`
	// Subject and Body are text/template templates of the sign-in code
	// message (fields: Service, User, Code, Minutes, Remote, Time,
	// Separator); empty means the built-in ones.
	Subject string `yaml:"subject"`
	Body    string `yaml:"body"`
	// Timeout bounds one attempt (10s); Retries follow a failed one (2),
	// the first after Backoff (1s), doubling.
	Timeout time.Duration `yaml:"timeout"`
	Retries *int          `yaml:"retries"`
	Backoff time.Duration `yaml:"backoff"`
}

// SMTPConfig is the mail server.
type SMTPConfig struct {
	Host string `yaml:"host"`
	// Port: 587 for starttls, 465 for implicit, 25 for none by default.
	Port int `yaml:"port"`
	// TLS is starttls (the default), implicit, or none (a relay on this
	// host, without AUTH).
	TLS string `yaml:"tls"`
	// CAFile verifies the server instead of the system's roots.
	CAFile string `yaml:"ca_file"`
	// Username turns on AUTH; the password is read from PasswordFile.
	Username     string `yaml:"username"`
	PasswordFile string `yaml:"password_file"`
	HELO         string `yaml:"helo"`
}

// SMSConfig sets up text messages: through a gateway's webhook, or a
// local command such as gammu-smsd-inject (exactly one of them).
type SMSConfig struct {
	Webhook *WebhookConfig `yaml:"webhook"`
	Command *CommandConfig `yaml:"command"`
	// Body is the text/template template of the sign-in code text.
	Body    string        `yaml:"body"`
	Timeout time.Duration `yaml:"timeout"`
	Retries *int          `yaml:"retries"`
	Backoff time.Duration `yaml:"backoff"`
}

// WebhookConfig is an SMS gateway's HTTP endpoint.
type WebhookConfig struct {
	URL string `yaml:"url"`
	// KeyFile holds the key that signs each body (HMAC-SHA256).
	KeyFile string `yaml:"key_file"`
	// SignatureHeader is X-Stepgate-Signature by default.
	SignatureHeader string `yaml:"signature_header"`
	CAFile          string `yaml:"ca_file"`
}

// CommandConfig is a local program that gets the message on stdin.
type CommandConfig struct {
	Path string `yaml:"path"`
	// Args are its arguments; "{to}" is replaced by the recipient.
	Args []string `yaml:"args"`
}

// timing bounds delivery: each attempt, the retries after a failure, and
// the wait before the first retry (doubling after).
type timing struct {
	Timeout time.Duration
	Retries *int
	Backoff time.Duration
}

func (c *EmailConfig) timing() timing { return timing{c.Timeout, c.Retries, c.Backoff} }
func (c *SMSConfig) timing() timing   { return timing{c.Timeout, c.Retries, c.Backoff} }

func (t timing) retry() Retry {
	r := DefaultRetry
	if t.Timeout > 0 {
		r.Timeout = t.Timeout
	}
	if t.Retries != nil {
		r.Retries = *t.Retries
	}
	if t.Backoff > 0 {
		r.Backoff = t.Backoff
	}
	return r
}

func (t timing) validate(key string, bad func(key, format string, args ...any)) {
	if t.Timeout < 0 || (t.Timeout > 0 && t.Timeout < 100*time.Millisecond) || t.Timeout > 5*time.Minute {
		bad(key+".timeout", "%s is out of range 100ms to 5m", t.Timeout)
	}
	if t.Retries != nil && (*t.Retries < 0 || *t.Retries > 10) {
		bad(key+".retries", "%d is out of range 0 to 10", *t.Retries)
	}
	if t.Backoff < 0 || t.Backoff > time.Minute {
		bad(key+".backoff", "%s is out of range 0 to 1m", t.Backoff)
	}
}

// Validate checks the e-mail settings and fills in defaults; key is
// where they sit in the file ("delivery.email").
func (c *EmailConfig) Validate(key string, bad func(key, format string, args ...any)) {
	if (c.SMTP == nil) == (c.Command == nil) {
		bad(key, "set exactly one of smtp and command")
	}
	if c.From == "" {
		bad(key+".from", "empty; give the sender address, such as stepgate <noreply@example.org>")
	} else if _, err := mail.ParseAddress(c.From); err != nil {
		bad(key+".from", "%q is not an address: %v", c.From, err)
	}
	if s := c.SMTP; s != nil {
		k := key + ".smtp"
		if s.Host == "" {
			bad(k+".host", "empty; give the mail server's host name")
		}
		if s.TLS == "" {
			s.TLS = TLSStartTLS
		}
		switch s.TLS {
		case TLSStartTLS, TLSImplicit, TLSNone:
		default:
			bad(k+".tls", "%q is not one of starttls, implicit, none", s.TLS)
		}
		if s.Port == 0 {
			s.Port = map[string]int{TLSStartTLS: 587, TLSImplicit: 465, TLSNone: 25}[s.TLS]
		}
		if s.Port < 1 || s.Port > 65535 {
			bad(k+".port", "%d is out of range 1 to 65535", s.Port)
		}
		if (s.Username == "") != (s.PasswordFile == "") {
			bad(k+".username", "username and password_file go together")
		}
		if s.Username != "" && s.TLS == TLSNone {
			bad(k+".tls", "none would send the AUTH password in clear; use starttls or implicit")
		}
		if s.TLS == TLSNone && !isLoopback(s.Host) {
			bad(k+".tls", "none is only for a relay on this host (localhost, 127.0.0.1 or ::1); %s is not", s.Host)
		}
		fileExists(k+".ca_file", s.CAFile, bad)
		fileExists(k+".password_file", s.PasswordFile, bad)
	}
	if c.Command != nil {
		c.Command.validate(key+".command", bad)
	}
	if _, err := ParseTemplates(c.Subject, c.Body, ""); err != nil {
		which := ".body"
		if strings.HasPrefix(err.Error(), "subject") {
			which = ".subject"
		}
		bad(key+which, "%v", err)
	}
	c.timing().validate(key, bad)
}

// Validate checks the text message settings and fills in defaults.
func (c *SMSConfig) Validate(key string, bad func(key, format string, args ...any)) {
	if (c.Webhook == nil) == (c.Command == nil) {
		bad(key, "set exactly one of webhook and command")
	}
	if w := c.Webhook; w != nil {
		k := key + ".webhook"
		if u, err := url.Parse(w.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad(k+".url", "%q is not an http:// or https:// URL", w.URL)
		} else if u.Scheme == "http" && !isLoopback(u.Hostname()) {
			bad(k+".url", "plain http is only for a gateway on this host; use https")
		}
		if w.KeyFile == "" {
			bad(k+".key_file", "empty; give the file holding the signing key (at least 16 bytes)")
		} else if b, err := os.ReadFile(w.KeyFile); err != nil {
			bad(k+".key_file", "%v", err)
		} else if len(strings.TrimSpace(string(b))) < 16 {
			bad(k+".key_file", "%s holds fewer than 16 bytes", w.KeyFile)
		}
		if w.SignatureHeader == "" {
			w.SignatureHeader = DefaultSignatureHeader
		}
		fileExists(k+".ca_file", w.CAFile, bad)
	}
	if c.Command != nil {
		c.Command.validate(key+".command", bad)
	}
	if _, err := ParseTemplates("", "", c.Body); err != nil {
		bad(key+".body", "%v", err)
	}
	c.timing().validate(key, bad)
}

func (c *CommandConfig) validate(key string, bad func(key, format string, args ...any)) {
	if !strings.HasPrefix(c.Path, "/") {
		bad(key+".path", "%q is not an absolute path", c.Path)
		return
	}
	if fi, err := os.Stat(c.Path); err != nil {
		bad(key+".path", "%v", err)
	} else if fi.IsDir() || fi.Mode()&0o111 == 0 {
		bad(key+".path", "%s is not an executable file", c.Path)
	}
}

func fileExists(key, path string, bad func(key, format string, args ...any)) {
	if path == "" {
		return
	}
	if _, err := os.Stat(path); err != nil {
		bad(key, "%v", err)
	}
}

func isLoopback(host string) bool {
	return host == "localhost" || host == "127.0.0.1" || host == "::1" || strings.HasPrefix(host, "127.")
}

// Channel builds the e-mail channel of a validated config. key names the
// config's place in errors.
func (c *EmailConfig) Channel(key string, log *slog.Logger) (*Channel, error) {
	if c.Command != nil {
		t, err := NewCommand(c.Command.Path, c.Command.Args, c.From)
		if err != nil {
			return nil, fmt.Errorf("%s.command: %w", key, err)
		}
		return NewChannel(store.MethodEmail, "command", t, c.timing().retry(), log), nil
	}
	s := c.SMTP
	pool, err := certpool.Load(key+".smtp.ca_file", s.CAFile)
	if err != nil {
		return nil, err
	}
	var pw string
	if s.PasswordFile != "" {
		b, err := os.ReadFile(s.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("%s.smtp.password_file: %w", key, err)
		}
		pw = strings.TrimRight(string(b), "\r\n")
	}
	t, err := NewSMTP(SMTPOptions{Host: s.Host, Port: s.Port, TLS: s.TLS, RootCAs: pool, Username: s.Username, Password: pw,
		From: c.From, HELO: s.HELO})
	if err != nil {
		return nil, fmt.Errorf("%s.smtp: %w", key, err)
	}
	return NewChannel(store.MethodEmail, "smtp", t, c.timing().retry(), log), nil
}

// Channel builds the text message channel of a validated config.
func (c *SMSConfig) Channel(key string, log *slog.Logger) (*Channel, error) {
	if c.Command != nil {
		t, err := NewCommand(c.Command.Path, c.Command.Args, "")
		if err != nil {
			return nil, fmt.Errorf("%s.command: %w", key, err)
		}
		return NewChannel(store.MethodSMS, "command", t, c.timing().retry(), log), nil
	}
	w := c.Webhook
	pool, err := certpool.Load(key+".webhook.ca_file", w.CAFile)
	if err != nil {
		return nil, err
	}
	k, err := os.ReadFile(w.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("%s.webhook.key_file: %w", key, err)
	}
	t, err := NewWebhook(WebhookOptions{URL: w.URL, Key: []byte(strings.TrimSpace(string(k))), Header: w.SignatureHeader, RootCAs: pool})
	if err != nil {
		return nil, fmt.Errorf("%s.webhook: %w", key, err)
	}
	return NewChannel(store.MethodSMS, "webhook", t, c.timing().retry(), log), nil
}
