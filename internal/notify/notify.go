// Package notify delivers stepgate's messages to people: sign-in codes
// and security alerts, by e-mail (SMTP or a local sendmail) and by text
// message (an SMS gateway's webhook or a local command such as
// gammu-smsd-inject), each with timeouts and retries.
package notify

import (
	"context"
	"errors"

	"github.com/stepgate/stepgate/internal/store"
)

// Message is one message to one recipient.
type Message struct {
	// To is an e-mail address or a phone number in E.164 form.
	To string
	// Subject is the subject of an e-mail; text messages have none.
	Subject string
	Body    string
	// Secrets are strings (the code) that must never reach a log line,
	// even inside a transport's error text.
	Secrets []string
}

// Transport hands a message to the outside world once.
type Transport interface {
	Deliver(ctx context.Context, kind store.MethodKind, m Message) error
}

// permanentError marks a failure that retrying cannot fix (a refused
// recipient, a gateway's 400).
type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }
func (e permanentError) Unwrap() error { return e.err }

// Permanent marks err as not worth retrying.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanentError{err}
}

// IsPermanent reports whether err was marked with Permanent.
func IsPermanent(err error) bool {
	var p permanentError
	return errors.As(err, &p)
}
