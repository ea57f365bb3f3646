package pop3

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"strings"

	"github.com/emersion/go-sasl"

	"github.com/stepgate/stepgate/internal/relay"
	"github.com/stepgate/stepgate/internal/verifier"
)

// maxLine caps a pre-login command (RFC 2449 allows 255 octets; an AUTH
// PLAIN initial response is longer, but within relay.MaxCredential's
// base64). Over it the connection ends.
const maxLine = 8 << 10

const genericFailure = "Authentication failed: use your password followed by the current code"

// protocol is POP3's part in the relay: the pre-login dialogue here, the
// upstream login in upstream.go.
type protocol struct{}

func (protocol) Dialogue(c *relay.Conn) relay.Dialogue { return &dialogue{c: c} }

// dialogue is POP3's AUTHORIZATION state (RFC 1939, 2449, 2595, 5034):
// CAPA, STLS, USER, PASS, AUTH PLAIN, XCLIENT from a trusted front, QUIT.
type dialogue struct {
	c    *relay.Conn
	user string // USER's argument, waiting for PASS
	seen bool   // USER was given
}

func (d *dialogue) Greet() error {
	// No APOP timestamp: APOP needs the password in clear on the server,
	// and password+code is never the same twice.
	return d.c.WriteLine("+OK stepgate ready")
}

func (d *dialogue) Hangup(why relay.Hangup) {
	switch why {
	case relay.TooManyBadCommands:
		d.c.WriteLine("-ERR Too many errors")
	case relay.TooManyFailures:
		d.c.WriteLine("-ERR [AUTH] Too many failures")
	case relay.Timeout:
		d.c.WriteLine("-ERR Disconnected for inactivity")
	case relay.Revoked:
		d.c.WriteLine("-ERR [SYS/PERM] Session revoked")
	}
}

func (d *dialogue) capa() {
	c := d.c
	c.WriteLine("+OK Capability list follows")
	if c.LoginAllowed() {
		c.WriteLine("USER")
		c.WriteLine("SASL PLAIN")
	}
	if c.CanStartTLS() {
		c.WriteLine("STLS")
	}
	c.WriteLine("RESP-CODES")
	c.WriteLine("AUTH-RESP-CODE")
	c.WriteLine("IMPLEMENTATION stepgate")
	c.WriteLine(".")
}

func (d *dialogue) Next(ctx context.Context) (relay.Outcome, error) {
	c := d.c
	budget := maxLine
	line, err := relay.ReadLine(c.Reader(), &budget)
	switch {
	case errors.Is(err, relay.ErrTooLong):
		c.Log().Warn("connection closed: command over the limit")
		c.WriteLine("-ERR Command too long")
		return relay.Close, nil
	case err != nil:
		return relay.Close, err
	}
	verb, arg, _ := bytes.Cut(line, []byte(" "))
	switch strings.ToUpper(string(verb)) {
	case "CAPA":
		d.capa()
		return relay.Continue, nil
	case "QUIT":
		c.WriteLine("+OK Bye")
		return relay.Close, nil
	case "NOOP":
		// Not an AUTHORIZATION command, but harmless and some clients
		// send it to keep the connection.
		c.WriteLine("+OK")
		return relay.Continue, nil
	case "STLS":
		if !c.CanStartTLS() {
			c.WriteLine("-ERR STLS is not available")
			return relay.Failed, nil
		}
		if c.Pipelined() {
			// Commands sent with STLS would be taken as if they had come
			// over TLS (CVE-2011-0411); StartTLS discards them.
			c.Log().Warn("data sent with STLS discarded")
		}
		c.WriteLine("+OK Begin TLS negotiation")
		if c.StartTLS(ctx) != nil {
			return relay.Close, nil
		}
		d.seen, d.user = false, ""
		return relay.Continue, nil
	case "XCLIENT":
		d.xclient(string(arg))
		return relay.Continue, nil
	case "APOP":
		c.WriteLine("-ERR [AUTH] APOP is not supported: use USER and PASS with your password followed by the code")
		return relay.Failed, nil
	case "USER":
		if !c.LoginAllowed() {
			c.Refuse(ctx, string(arg), verifier.ReasonPlainText)
			c.WriteLine("-ERR [AUTH] Use STLS or pop3s to send a password")
			return relay.Failed, nil
		}
		if len(arg) == 0 {
			c.WriteLine("-ERR USER wants a name")
			return relay.Failed, nil
		}
		d.user, d.seen = string(arg), true
		c.WriteLine("+OK")
		return relay.Continue, nil
	case "PASS":
		if !d.seen {
			c.WriteLine("-ERR USER first")
			return relay.Failed, nil
		}
		user := d.user
		d.user, d.seen = "", false
		// The password is the rest of the line, spaces and all (RFC 1939
		// leaves it to the server; passwords have spaces).
		return d.signIn(ctx, user, string(arg)), nil
	case "AUTH":
		return d.auth(ctx, string(arg)), nil
	}
	c.WriteLine("-ERR Command not allowed before login")
	return relay.BadCommand, nil
}

// xclient takes the real client's address from a trusted front, as
// Dovecot's pop3-login does: XCLIENT ADDR=ip PORT=port.
func (d *dialogue) xclient(arg string) {
	var ip, port string
	for _, f := range strings.Fields(arg) {
		k, v, _ := strings.Cut(f, "=")
		switch strings.ToUpper(k) {
		case "ADDR":
			ip = v
		case "PORT":
			port = v
		}
	}
	if ip == "" || !d.c.Originating(ip, port) {
		d.c.WriteLine("-ERR XCLIENT not allowed")
		return
	}
	d.c.WriteLine("+OK")
}

func (d *dialogue) auth(ctx context.Context, arg string) relay.Outcome {
	c := d.c
	mech, ir, hasIR := strings.Cut(arg, " ")
	if mech == "" {
		// RFC 1734's bare AUTH lists the mechanisms.
		c.WriteLine("+OK")
		if c.LoginAllowed() {
			c.WriteLine("PLAIN")
		}
		c.WriteLine(".")
		return relay.Continue
	}
	if !strings.EqualFold(mech, "PLAIN") {
		c.WriteLine("-ERR [AUTH] Only AUTH PLAIN is supported")
		return relay.Failed
	}
	if !c.LoginAllowed() {
		c.Refuse(ctx, "", verifier.ReasonPlainText)
		c.WriteLine("-ERR [AUTH] Use STLS or pop3s to send a password")
		return relay.Failed
	}
	resp := ir
	if !hasIR {
		c.WriteLine("+ ")
		budget := maxLine
		line, err := relay.ReadLine(c.Reader(), &budget)
		if err != nil {
			c.Log().Info("connection closed: bad SASL response", "err", err)
			c.WriteLine("-ERR Bad SASL response")
			return relay.Close
		}
		resp = string(line)
	}
	if resp == "*" {
		c.WriteLine("-ERR AUTH cancelled")
		return relay.Failed
	}
	if resp == "=" {
		resp = ""
	}
	if len(resp) > 4*relay.MaxCredential {
		c.Refuse(ctx, "", verifier.ReasonTooLong)
		c.WriteLine("-ERR [AUTH] SASL response too long")
		return relay.Failed
	}
	raw, err := base64.StdEncoding.DecodeString(resp)
	if err != nil {
		c.WriteLine("-ERR SASL response is not base64")
		return relay.Failed
	}
	var authz, user, pass string
	srv := sasl.NewPlainServer(func(identity, username, password string) error {
		authz, user, pass = identity, username, password
		return nil
	})
	if _, _, err := srv.Next(raw); err != nil {
		c.WriteLine("-ERR Malformed PLAIN response")
		return relay.Failed
	}
	if authz != "" && authz != user {
		// Acting as someone else is for master users upstream, never for
		// a client of stepgate.
		c.Refuse(ctx, user, verifier.ReasonAuthzID)
		c.WriteLine("-ERR [AUTH] Authorization identity must be the user")
		return relay.Failed
	}
	return d.signIn(ctx, user, pass)
}

// signIn answers the relay's sign-in with RFC 3206's response codes; on
// success the connection splices (the client is in TRANSACTION state
// upstream).
func (d *dialogue) signIn(ctx context.Context, user, pass string) relay.Outcome {
	c := d.c
	res := c.SignIn(ctx, user, pass)
	switch res.Result {
	case relay.PrivacyRequired:
		c.WriteLine("-ERR [AUTH] Use STLS or pop3s to send a password")
		return relay.Failed
	case relay.Unavailable:
		c.WriteLine("-ERR [SYS/TEMP] The mail server is unavailable, try again later")
		return relay.Continue // not the client's fault
	case relay.Busy:
		c.WriteLine("-ERR [SYS/TEMP] Too many sign-ins at once, try again shortly")
		return relay.Continue
	case relay.Denied:
		msg := genericFailure
		if res.Message != "" {
			msg = strings.NewReplacer("\r", " ", "\n", " ").Replace(res.Message)
		}
		c.WriteLine("-ERR [AUTH] %s", msg)
		return relay.Failed
	}
	if c.WriteLine("+OK Logged in through stepgate") != nil {
		return relay.Close
	}
	return relay.Splice
}
