package smtp

import (
	"context"
	"encoding/base64"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"

	"github.com/emersion/go-sasl"

	"github.com/stepgate/stepgate/internal/relay"
	"github.com/stepgate/stepgate/internal/verifier"
)

// maxLine caps a pre-login command line; RFC 4954 allows an AUTH line of
// 12288 octets, far more than relay.MaxCredential's base64 needs. Over
// it the connection ends.
const maxLine = 12288

// hostname names stepgate in the greeting and EHLO.
const hostname = "stepgate"

// The answers every failed sign-in gets, whatever the reason (RFC 4954).
const (
	authFailed  = "535 5.7.8 Authentication failed: use your password followed by the current code"
	authTempErr = "454 4.7.0 The mail server is unavailable, try again later"
)

// passThrough are the EHLO extensions that are the mail server's to
// offer: the client sees them only when the mail server's EHLO has them,
// with its parameters (SIZE's limit), since after AUTH it talks to the
// mail server.
var passThrough = map[string]bool{"SIZE": true, "8BITMIME": true, "SMTPUTF8": true, "PIPELINING": true,
	"CHUNKING": true, "ENHANCEDSTATUSCODES": true}

// protocol is SMTP's part in the relay: the pre-login dialogue here, the
// upstream login in upstream.go. It keeps the mail server's extensions,
// read from its EHLO on every upstream connection.
type protocol struct {
	log      *slog.Logger
	up       *relay.Dialer
	caps     atomic.Pointer[[]string]
	fetching atomic.Bool
}

// extensions are the mail server's passThrough extensions as it last
// announced them; until it has (down at start-up), none, and one
// background connection tries to learn them.
func (p *protocol) extensions() []string {
	if c := p.caps.Load(); c != nil {
		return *c
	}
	if p.up != nil && p.fetching.CompareAndSwap(false, true) {
		go func() {
			defer p.fetching.Store(false)
			p.up.Check(context.Background(), p)
		}()
	}
	return nil
}

func (p *protocol) learn(ehlo []string) {
	var keep []string
	for _, l := range ehlo {
		if f := strings.Fields(l); len(f) > 0 && passThrough[strings.ToUpper(f[0])] {
			keep = append(keep, l)
		}
	}
	p.caps.Store(&keep)
}

func (p *protocol) Dialogue(c *relay.Conn) relay.Dialogue { return &dialogue{c: c, p: p} }

// dialogue is SMTP before AUTH (RFC 5321, 3207, 4954): EHLO, HELO,
// STARTTLS, AUTH PLAIN and LOGIN, RSET, NOOP, QUIT, and XCLIENT from a
// trusted front.
type dialogue struct {
	c     *relay.Conn
	p     *protocol
	hello bool // EHLO or HELO given since the greeting or TLS
}

func (d *dialogue) Greet() error { return d.c.WriteLine("220 %s ESMTP ready", hostname) }

func (d *dialogue) Hangup(why relay.Hangup) {
	switch why {
	case relay.TooManyBadCommands:
		d.c.WriteLine("421 4.7.0 Too many errors")
	case relay.TooManyFailures:
		d.c.WriteLine("421 4.7.0 Too many failures")
	case relay.Timeout:
		d.c.WriteLine("421 4.4.2 Timeout, closing connection")
	case relay.Revoked:
		d.c.WriteLine("421 4.7.0 Session revoked")
	}
}

func (d *dialogue) ehlo(domain string) {
	c := d.c
	lines := []string{hostname}
	lines = append(lines, d.p.extensions()...)
	if c.LoginAllowed() {
		lines = append(lines, "AUTH PLAIN LOGIN")
	}
	if c.CanStartTLS() {
		lines = append(lines, "STARTTLS")
	}
	for i, l := range lines {
		sep := "-"
		if i == len(lines)-1 {
			sep = " "
		}
		c.WriteLine("250%s%s", sep, l)
	}
	d.hello = true
}

func (d *dialogue) Next(ctx context.Context) (relay.Outcome, error) {
	c := d.c
	budget := maxLine
	line, err := relay.ReadLine(c.Reader(), &budget)
	switch {
	case errors.Is(err, relay.ErrTooLong):
		c.Log().Warn("connection closed: command over the limit")
		c.WriteLine("500 5.5.6 Line too long")
		return relay.Close, nil
	case err != nil:
		return relay.Close, err
	}
	verb, arg, _ := strings.Cut(string(line), " ")
	switch strings.ToUpper(verb) {
	case "EHLO":
		d.ehlo(arg)
		return relay.Continue, nil
	case "HELO":
		c.WriteLine("250 %s", hostname)
		d.hello = true
		return relay.Continue, nil
	case "NOOP":
		c.WriteLine("250 2.0.0 OK")
		return relay.Continue, nil
	case "RSET":
		c.WriteLine("250 2.0.0 OK")
		return relay.Continue, nil
	case "QUIT":
		c.WriteLine("221 2.0.0 Bye")
		return relay.Close, nil
	case "STARTTLS":
		if !c.CanStartTLS() {
			c.WriteLine("502 5.5.1 STARTTLS is not available")
			return relay.Failed, nil
		}
		if c.Pipelined() {
			// Commands sent with STARTTLS would be taken as if they had
			// come over TLS (CVE-2011-0411); StartTLS discards them.
			c.Log().Warn("data sent with STARTTLS discarded")
		}
		c.WriteLine("220 2.0.0 Ready to start TLS")
		if c.StartTLS(ctx) != nil {
			return relay.Close, nil
		}
		d.hello = false // RFC 3207: the client starts over with EHLO
		return relay.Continue, nil
	case "XCLIENT":
		return d.xclient(arg), nil
	case "AUTH":
		if !d.hello {
			c.WriteLine("503 5.5.1 Send EHLO first")
			return relay.Failed, nil
		}
		return d.auth(ctx, arg), nil
	case "MAIL", "RCPT", "DATA", "BDAT", "VRFY", "EXPN", "ETRN", "BURL":
		c.WriteLine("530 5.7.0 Authentication required")
		return relay.Failed, nil
	}
	c.WriteLine("502 5.5.2 Command not recognized")
	return relay.BadCommand, nil
}

// xclient takes the real client's address from a trusted front, as
// Postfix does (XCLIENT ADDR=ip PORT=port), and starts the session over.
func (d *dialogue) xclient(arg string) relay.Outcome {
	var ip, port string
	for _, f := range strings.Fields(arg) {
		k, v, _ := strings.Cut(f, "=")
		switch strings.ToUpper(k) {
		case "ADDR":
			ip = strings.TrimPrefix(strings.ToUpper(v), "IPV6:")
			if ip == strings.ToUpper(v) {
				ip = v
			}
		case "PORT":
			port = v
		}
	}
	if ip == "" || !d.c.Originating(ip, port) {
		d.c.WriteLine("550 5.7.0 XCLIENT not allowed")
		return relay.Failed
	}
	d.hello = false
	d.Greet()
	return relay.Continue
}

func (d *dialogue) auth(ctx context.Context, arg string) relay.Outcome {
	c := d.c
	mech, ir, hasIR := strings.Cut(arg, " ")
	mech = strings.ToUpper(mech)
	if mech != "PLAIN" && mech != "LOGIN" {
		c.WriteLine("504 5.5.4 Only AUTH PLAIN and LOGIN are supported")
		return relay.Failed
	}
	if !c.LoginAllowed() {
		c.Refuse(ctx, "", verifier.ReasonPlainText)
		c.WriteLine("538 5.7.11 Encryption required: use STARTTLS")
		return relay.Failed
	}
	// read is one SASL response: the initial one when given, else the
	// answer to a 334 challenge.
	read := func(challenge string, initial bool) (string, relay.Outcome, bool) {
		if initial {
			return ir, 0, true
		}
		c.WriteLine("334 %s", challenge)
		budget := maxLine
		line, err := relay.ReadLine(c.Reader(), &budget)
		if err != nil {
			c.Log().Info("connection closed: bad SASL response", "err", err)
			c.WriteLine("500 5.5.6 Bad SASL response")
			return "", relay.Close, false
		}
		return string(line), 0, true
	}
	decode := func(resp string) ([]byte, relay.Outcome, bool) {
		switch {
		case resp == "*":
			c.WriteLine("501 5.7.0 Authentication cancelled")
			return nil, relay.Failed, false
		case resp == "=":
			return nil, 0, true
		case len(resp) > 4*relay.MaxCredential:
			c.Refuse(ctx, "", verifier.ReasonTooLong)
			c.WriteLine("500 5.5.6 SASL response too long")
			return nil, relay.Failed, false
		}
		raw, err := base64.StdEncoding.DecodeString(resp)
		if err != nil {
			c.WriteLine("501 5.5.2 SASL response is not base64")
			return nil, relay.Failed, false
		}
		return raw, 0, true
	}
	var user, pass string
	if mech == "PLAIN" {
		resp, out, ok := read("", hasIR)
		if !ok {
			return out
		}
		raw, out, ok := decode(resp)
		if !ok {
			return out
		}
		var authz string
		srv := sasl.NewPlainServer(func(identity, username, password string) error {
			authz, user, pass = identity, username, password
			return nil
		})
		if _, _, err := srv.Next(raw); err != nil {
			c.WriteLine("501 5.5.2 Malformed PLAIN response")
			return relay.Failed
		}
		if authz != "" && authz != user {
			// Acting as someone else is for master users upstream, never
			// for a client of stepgate.
			c.Refuse(ctx, user, verifier.ReasonAuthzID)
			c.WriteLine(authFailed)
			return relay.Failed
		}
	} else {
		resp, out, ok := read("VXNlcm5hbWU6", hasIR) // "Username:"
		if !ok {
			return out
		}
		raw, out, ok := decode(resp)
		if !ok {
			return out
		}
		user = string(raw)
		if resp, out, ok = read("UGFzc3dvcmQ6", false); !ok { // "Password:"
			return out
		}
		if raw, out, ok = decode(resp); !ok {
			return out
		}
		pass = string(raw)
	}
	return d.signIn(ctx, user, pass)
}

// signIn answers the relay's sign-in; on success the client's next
// command goes to the mail server, where it is signed in as the user.
func (d *dialogue) signIn(ctx context.Context, user, pass string) relay.Outcome {
	c := d.c
	res := c.SignIn(ctx, user, pass)
	switch res.Result {
	case relay.PrivacyRequired:
		c.WriteLine("538 5.7.11 Encryption required: use STARTTLS")
		return relay.Failed
	case relay.Unavailable, relay.Busy:
		c.WriteLine(authTempErr) // temporary: the client keeps the password
		return relay.Continue
	case relay.Denied:
		if res.Message != "" {
			c.WriteLine("535 5.7.8 %s", strings.NewReplacer("\r", " ", "\n", " ").Replace(res.Message))
		} else {
			c.WriteLine(authFailed)
		}
		return relay.Failed
	}
	if c.WriteLine("235 2.7.0 Authentication successful") != nil {
		return relay.Close
	}
	return relay.Splice
}
