package notify

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"

	mail "github.com/wneessen/go-mail"

	"github.com/stepgate/stepgate/internal/store"
)

// SMTP TLS modes.
const (
	TLSStartTLS = "starttls" // STARTTLS is required (port 587)
	TLSImplicit = "implicit" // TLS from the first byte (port 465)
	TLSNone     = "none"     // a relay on this host only, without AUTH
)

// SMTP sends e-mail through a mail server with github.com/wneessen/go-mail.
type SMTP struct {
	host     string
	port     int
	mode     string
	tls      *tls.Config
	username string
	password string
	from     string
	helo     string
}

// SMTPOptions configure an SMTP transport.
type SMTPOptions struct {
	Host string
	Port int
	// TLS is TLSStartTLS, TLSImplicit or TLSNone.
	TLS string
	// RootCAs verifies the server; nil means the system's roots.
	RootCAs *x509.CertPool
	// Username and Password, when set, sign in with AUTH (over TLS only).
	Username, Password string
	// From is the sender address ("stepgate <noreply@example.org>").
	From string
	// HELO is the name given in EHLO; the host name when empty.
	HELO string
}

// NewSMTP returns an SMTP transport.
func NewSMTP(o SMTPOptions) (*SMTP, error) {
	if o.Host == "" || o.Port < 1 || o.Port > 65535 {
		return nil, fmt.Errorf("smtp: host and port 1 to 65535 are required")
	}
	switch o.TLS {
	case TLSStartTLS, TLSImplicit:
	case TLSNone:
		if o.Username != "" {
			return nil, errors.New("smtp: AUTH without TLS would send the password in clear")
		}
	default:
		return nil, fmt.Errorf("smtp: tls %q: want starttls, implicit or none", o.TLS)
	}
	if err := checkFrom(o.From); err != nil {
		return nil, err
	}
	return &SMTP{host: o.Host, port: o.Port, mode: o.TLS, username: o.Username, password: o.Password, from: o.From, helo: o.HELO,
		tls: &tls.Config{ServerName: o.Host, RootCAs: o.RootCAs, MinVersion: tls.VersionTLS12}}, nil
}

func checkFrom(from string) error {
	m := mail.NewMsg()
	if err := m.From(from); err != nil {
		return fmt.Errorf("from %q is not an address: %w", from, err)
	}
	return nil
}

// buildMail turns a message into an e-mail from from.
func buildMail(from string, m Message) (*mail.Msg, error) {
	msg := mail.NewMsg(mail.WithNoDefaultUserAgent())
	if err := msg.From(from); err != nil {
		return nil, Permanent(fmt.Errorf("from: %w", err))
	}
	if err := msg.To(m.To); err != nil {
		return nil, Permanent(fmt.Errorf("recipient is not an address: %w", err))
	}
	msg.Subject(m.Subject)
	msg.SetDate()
	msg.SetMessageID()
	// RFC 3834: no vacation replies to machine mail.
	msg.SetGenHeader(mail.Header("Auto-Submitted"), "auto-generated")
	msg.SetBodyString(mail.TypeTextPlain, m.Body)
	return msg, nil
}

// writeMail writes m as an RFC 5322 message (for a sendmail command).
func writeMail(w io.Writer, from string, m Message) error {
	msg, err := buildMail(from, m)
	if err != nil {
		return err
	}
	_, err = msg.WriteTo(w)
	return err
}

// Deliver sends one e-mail over a new connection.
func (s *SMTP) Deliver(ctx context.Context, kind store.MethodKind, m Message) error {
	if kind != store.MethodEmail {
		return Permanent(fmt.Errorf("smtp cannot deliver %s", kind))
	}
	msg, err := buildMail(s.from, m)
	if err != nil {
		return err
	}
	opts := []mail.Option{mail.WithPort(s.port), mail.WithTLSConfig(s.tls)}
	switch s.mode {
	case TLSStartTLS:
		opts = append(opts, mail.WithTLSPolicy(mail.TLSMandatory))
	case TLSImplicit:
		opts = append(opts, mail.WithSSL())
	case TLSNone:
		opts = append(opts, mail.WithTLSPolicy(mail.NoTLS))
	}
	// WithTLSPolicy and WithSSL may pick a default port; ours wins.
	opts = append(opts, mail.WithPort(s.port))
	if dl, ok := ctx.Deadline(); ok {
		opts = append(opts, mail.WithTimeout(time.Until(dl)))
	}
	if s.helo != "" {
		opts = append(opts, mail.WithHELO(s.helo))
	}
	if s.username != "" {
		opts = append(opts, mail.WithSMTPAuth(mail.SMTPAuthAutoDiscover), mail.WithUsername(s.username), mail.WithPassword(s.password))
	}
	c, err := mail.NewClient(s.host, opts...)
	if err != nil {
		return Permanent(fmt.Errorf("smtp %s: %w", net.JoinHostPort(s.host, strconv.Itoa(s.port)), err))
	}
	if err := c.DialAndSendWithContext(ctx, msg); err != nil {
		err = fmt.Errorf("smtp %s: %w", net.JoinHostPort(s.host, strconv.Itoa(s.port)), err)
		var se *mail.SendError
		if errors.As(err, &se) && !se.IsTemp() && se.ErrorCode() >= 500 {
			return Permanent(err)
		}
		return err
	}
	return nil
}
