package imap

import (
	"context"
	"encoding/base64"
	"errors"
	"strings"

	"github.com/emersion/go-sasl"

	"github.com/stepgate/stepgate/internal/relay"
	"github.com/stepgate/stepgate/internal/verifier"
)

const genericFailure = "Authentication failed: use your password followed by the current code"

// protocol is IMAP's part in the relay: the pre-login dialogue here, the
// upstream login in upstream.go.
type protocol struct{}

func (protocol) Dialogue(c *relay.Conn) relay.Dialogue {
	d := &dialogue{c: c}
	d.r = &commandReader{br: c.Reader(), continueLiteral: func() error { return c.WriteLine("+ Ready for literal data") }}
	return d
}

// dialogue is IMAP before login: greeting, CAPABILITY, NOOP, ID,
// STARTTLS, LOGIN, AUTHENTICATE PLAIN, LOGOUT.
type dialogue struct {
	c *relay.Conn
	r *commandReader
}

func (d *dialogue) capabilities() string {
	caps := "IMAP4rev1 SASL-IR LITERAL+ ID"
	if d.c.LoginAllowed() {
		caps += " AUTH=PLAIN"
	} else {
		caps += " LOGINDISABLED"
	}
	if d.c.CanStartTLS() {
		caps += " STARTTLS"
	}
	return caps
}

func (d *dialogue) Greet() error {
	return d.c.WriteLine("* OK [CAPABILITY %s] stepgate ready", d.capabilities())
}

func (d *dialogue) Hangup(why relay.Hangup) {
	switch why {
	case relay.TooManyBadCommands:
		d.c.WriteLine("* BYE Too many errors")
	case relay.TooManyFailures:
		d.c.WriteLine("* BYE Too many failures")
	case relay.Timeout:
		d.c.WriteLine("* BYE Autologout; idle for too long")
	case relay.Revoked:
		d.c.WriteLine("* BYE Session revoked")
	}
}

func (d *dialogue) Next(ctx context.Context) (relay.Outcome, error) {
	cmd, err := d.r.read()
	var se *syntaxError
	switch {
	case errors.As(err, &se):
		tag := "*"
		if cmd != nil && cmd.tag != "" {
			tag = cmd.tag
		}
		d.c.WriteLine("%s BAD %s", tag, se.msg)
		return relay.BadCommand, nil
	case errors.Is(err, relay.ErrTooLong):
		if cmd != nil && (cmd.name == "LOGIN" || cmd.name == "AUTHENTICATE") {
			// A literal over the credential limit: a sign-in refused.
			user := ""
			if cmd.name == "LOGIN" && len(cmd.args) > 0 {
				user, _ = cmd.args[0].text()
			}
			d.c.Refuse(ctx, user, verifier.ReasonTooLong)
		}
		d.c.Log().Warn("connection closed: command or literal over the limit")
		d.c.WriteLine("* BYE Command too long")
		return relay.Close, nil
	case err != nil:
		return relay.Close, err
	}
	return d.handle(ctx, cmd), nil
}

// handle answers one pre-login command.
func (d *dialogue) handle(ctx context.Context, cmd *command) relay.Outcome {
	c := d.c
	switch cmd.name {
	case "CAPABILITY":
		c.WriteLine("* CAPABILITY %s", d.capabilities())
		c.WriteLine("%s OK CAPABILITY completed", cmd.tag)
		return relay.Continue
	case "NOOP":
		c.WriteLine("%s OK NOOP completed", cmd.tag)
		return relay.Continue
	case "LOGOUT":
		c.WriteLine("* BYE Logging out")
		c.WriteLine("%s OK LOGOUT completed", cmd.tag)
		return relay.Close
	case "ID":
		if ip, port, ok := originating(cmd); ok {
			c.Originating(ip, port)
		}
		c.WriteLine(`* ID ("name" "stepgate")`)
		c.WriteLine("%s OK ID completed", cmd.tag)
		return relay.Continue
	case "STARTTLS":
		if !c.CanStartTLS() {
			c.WriteLine("%s BAD STARTTLS is not available", cmd.tag)
			return relay.Failed
		}
		if c.Pipelined() {
			c.WriteLine("%s BAD data after STARTTLS", cmd.tag)
			return relay.Close
		}
		c.WriteLine("%s OK Begin TLS negotiation now", cmd.tag)
		if c.StartTLS(ctx) != nil {
			return relay.Close
		}
		return relay.Continue
	case "LOGIN":
		if len(cmd.args) != 2 {
			c.WriteLine("%s BAD LOGIN wants a user name and a password", cmd.tag)
			return relay.Failed
		}
		user, ok1 := cmd.args[0].text()
		pass, ok2 := cmd.args[1].text()
		if !ok1 || !ok2 {
			c.WriteLine("%s BAD LOGIN wants a user name and a password", cmd.tag)
			return relay.Failed
		}
		return d.signIn(ctx, cmd.tag, user, pass)
	case "AUTHENTICATE":
		return d.authenticate(ctx, cmd)
	}
	c.WriteLine("%s BAD Command not allowed before login", cmd.tag)
	return relay.Failed
}

func (d *dialogue) authenticate(ctx context.Context, cmd *command) relay.Outcome {
	c := d.c
	if len(cmd.args) < 1 || len(cmd.args) > 2 {
		c.WriteLine("%s BAD AUTHENTICATE wants a mechanism", cmd.tag)
		return relay.Failed
	}
	mech, _ := cmd.args[0].text()
	if upper(mech) != "PLAIN" {
		c.WriteLine("%s NO [CANNOT] Only AUTHENTICATE PLAIN is supported", cmd.tag)
		return relay.Failed
	}
	var resp string
	if len(cmd.args) == 2 {
		resp, _ = cmd.args[1].text() // SASL-IR; "=" is an empty response
	} else {
		c.WriteLine("+ ")
		budget := maxLine
		line, err := relay.ReadLine(c.Reader(), &budget)
		if err != nil {
			c.WriteLine("* BYE Bad SASL response")
			return relay.Close
		}
		resp = string(line)
	}
	if resp == "*" {
		c.WriteLine("%s BAD AUTHENTICATE cancelled", cmd.tag)
		return relay.Failed
	}
	if resp == "=" {
		resp = ""
	}
	if len(resp) > 4*relay.MaxCredential {
		c.Refuse(ctx, "", verifier.ReasonTooLong)
		c.WriteLine("%s BAD SASL response too long", cmd.tag)
		return relay.Failed
	}
	raw, err := base64.StdEncoding.DecodeString(resp)
	if err != nil {
		c.WriteLine("%s BAD SASL response is not base64", cmd.tag)
		return relay.Failed
	}
	var authz, user, pass string
	srv := sasl.NewPlainServer(func(identity, username, password string) error {
		authz, user, pass = identity, username, password
		return nil
	})
	if _, _, err := srv.Next(raw); err != nil {
		c.WriteLine("%s BAD Malformed PLAIN response", cmd.tag)
		return relay.Failed
	}
	if authz != "" && authz != user {
		// Acting as someone else is what master users do upstream; a
		// client of stepgate never may.
		c.Refuse(ctx, user, verifier.ReasonAuthzID)
		c.WriteLine("%s NO [AUTHORIZATIONFAILED] Authorization identity must be the user", cmd.tag)
		return relay.Failed
	}
	return d.signIn(ctx, cmd.tag, user, pass)
}

// signIn answers the relay's sign-in; on success the connection splices
// after an OK that carries the mail server's capabilities.
func (d *dialogue) signIn(ctx context.Context, tag, user, pass string) relay.Outcome {
	c := d.c
	res := c.SignIn(ctx, user, pass)
	switch res.Result {
	case relay.PrivacyRequired:
		c.WriteLine("%s NO [PRIVACYREQUIRED] Use STARTTLS or imaps to send a password", tag)
		return relay.Failed
	case relay.Unavailable:
		c.WriteLine("%s NO [UNAVAILABLE] The mail server is unavailable, try again later", tag)
		return relay.Continue // not the client's fault
	case relay.Busy:
		c.WriteLine("%s NO [UNAVAILABLE] Too many sign-ins at once, try again shortly", tag)
		return relay.Continue
	case relay.Denied:
		if res.Message != "" {
			c.WriteLine("%s NO [AUTHENTICATIONFAILED] %s", tag, oneLine(res.Message))
		} else {
			c.WriteLine("%s NO [AUTHENTICATIONFAILED] %s", tag, genericFailure)
		}
		return relay.Failed
	}
	caps := strings.Join(res.Upstream.(*upLogin).caps, " ")
	if c.WriteLine("%s OK [CAPABILITY %s] Logged in through stepgate", tag, caps) != nil {
		return relay.Close
	}
	return relay.Splice
}

// originating reads the client's address and port from ID's field list
// (RFC 2971; "x-originating-ip" and "x-originating-port" as Dovecot and
// webmails send them). Whether they are believed is the relay's call.
func originating(cmd *command) (ip, port string, ok bool) {
	if len(cmd.args) != 1 || !cmd.args[0].isList {
		return "", "", false
	}
	l := cmd.args[0].list
	for i := 0; i+1 < len(l); i += 2 {
		k, kok := l[i].text()
		v, vok := l[i+1].text()
		if !kok || !vok {
			continue
		}
		switch strings.ToLower(k) {
		case "x-originating-ip":
			ip, ok = v, true
		case "x-originating-port":
			port = v
		}
	}
	return ip, port, ok
}

func oneLine(s string) string {
	return strings.NewReplacer("\r", " ", "\n", " ").Replace(s)
}
