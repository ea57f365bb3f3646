package imap

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-sasl"

	"github.com/stepgate/stepgate/internal/verifier"
)

// maxFailures is how many failed sign-ins or bad commands a connection
// gets before stepgate says BYE.
const maxFailures = 3

const genericFailure = "Authentication failed: use your password followed by the current code"

// conn is one client connection before login; after login it becomes a
// splice to the mail server.
type conn struct {
	s      *Server
	raw    net.Conn // what is closed at shutdown
	nc     net.Conn // raw, or TLS over it
	br     *bufio.Reader
	remote string // address without the port
	tls    bool

	mu sync.Mutex
	up *upConn // set once logged in upstream
}

func newConn(s *Server, raw, nc net.Conn, implicitTLS bool) *conn {
	host, _, err := net.SplitHostPort(raw.RemoteAddr().String())
	if err != nil {
		host = raw.RemoteAddr().String()
	}
	return &conn{s: s, raw: raw, nc: nc, br: bufio.NewReaderSize(nc, 4096), remote: host, tls: implicitTLS}
}

func deadline(d time.Duration) time.Time { return time.Now().Add(d) }

func (c *conn) closeAll() {
	c.raw.Close()
	c.mu.Lock()
	if c.up != nil {
		c.up.close()
	}
	c.mu.Unlock()
}

func (c *conn) writeLine(format string, args ...any) error {
	_, err := fmt.Fprintf(c.nc, format+"\r\n", args...)
	return err
}

// loginAllowed: plain-text passwords only over TLS or from this machine.
func (c *conn) loginAllowed() bool {
	if c.tls || c.s.cfg.AllowPlainRemote {
		return true
	}
	ip := net.ParseIP(c.remote)
	return ip != nil && ip.IsLoopback()
}

func (c *conn) capabilities() string {
	caps := "IMAP4rev1 SASL-IR LITERAL+ ID"
	if c.loginAllowed() {
		caps += " AUTH=PLAIN"
	} else {
		caps += " LOGINDISABLED"
	}
	if c.s.tls != nil && !c.tls {
		caps += " STARTTLS"
	}
	return caps
}

func (c *conn) serve(ctx context.Context) {
	defer c.closeAll()
	log := c.s.log.With("remote", c.raw.RemoteAddr().String())
	// The whole pre-login dialogue has one deadline.
	c.raw.SetDeadline(deadline(c.s.cfg.PreLoginTimeout.D()))
	if tc, ok := c.nc.(*tls.Conn); ok {
		if err := tc.HandshakeContext(ctx); err != nil {
			log.Info("connection closed: TLS handshake failed", "err", err)
			return
		}
	}
	if c.writeLine("* OK [CAPABILITY %s] stepgate ready", c.capabilities()) != nil {
		return
	}
	r := &commandReader{br: c.br, continueLiteral: func() error { return c.writeLine("+ Ready for literal data") }}
	failures := 0
	for {
		cmd, err := r.read()
		var se *syntaxError
		switch {
		case errors.As(err, &se):
			failures++
			tag := "*"
			if cmd != nil && cmd.tag != "" {
				tag = cmd.tag
			}
			c.writeLine("%s BAD %s", tag, se.msg)
			if failures >= maxFailures {
				log.Info("connection closed: too many bad commands")
				c.writeLine("* BYE Too many errors")
				return
			}
			continue
		case errors.Is(err, errTooLong):
			if cmd != nil && (cmd.name == "LOGIN" || cmd.name == "AUTHENTICATE") {
				// A literal over the credential limit: a sign-in refused.
				user := ""
				if cmd.name == "LOGIN" && len(cmd.args) > 0 {
					user, _ = cmd.args[0].text()
				}
				c.refuse(ctx, user, verifier.ReasonTooLong)
			}
			log.Warn("connection closed: command or literal over the limit")
			c.writeLine("* BYE Command too long")
			return
		case errors.Is(err, os.ErrDeadlineExceeded):
			log.Info("connection closed: no login within the pre-login timeout")
			c.writeLine("* BYE Autologout; idle for too long")
			return
		case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
			return
		case err != nil:
			log.Info("connection closed", "err", err)
			return
		}
		next, done := c.handle(ctx, r, cmd)
		if done != nil {
			done(ctx, log)
			return
		}
		if !next {
			failures++
			if failures >= maxFailures {
				log.Info("connection closed: too many failures")
				c.writeLine("* BYE Too many failures")
				return
			}
		}
	}
}

// handle answers one pre-login command. ok is false for a failure that
// counts towards BYE; splice, when set, takes over the connection.
func (c *conn) handle(ctx context.Context, r *commandReader, cmd *command) (ok bool, splice func(context.Context, interface{ Info(string, ...any) })) {
	switch cmd.name {
	case "CAPABILITY":
		c.writeLine("* CAPABILITY %s", c.capabilities())
		c.writeLine("%s OK CAPABILITY completed", cmd.tag)
		return true, nil
	case "NOOP":
		c.writeLine("%s OK NOOP completed", cmd.tag)
		return true, nil
	case "LOGOUT":
		c.writeLine("* BYE Logging out")
		c.writeLine("%s OK LOGOUT completed", cmd.tag)
		return true, func(context.Context, interface{ Info(string, ...any) }) {}
	case "ID":
		c.writeLine(`* ID ("name" "stepgate")`)
		c.writeLine("%s OK ID completed", cmd.tag)
		return true, nil
	case "STARTTLS":
		if c.s.tls == nil || c.tls {
			c.writeLine("%s BAD STARTTLS is not available", cmd.tag)
			return false, nil
		}
		if c.br.Buffered() > 0 {
			// Plain text after STARTTLS would be read as if encrypted.
			c.writeLine("%s BAD data after STARTTLS", cmd.tag)
			return false, func(context.Context, interface{ Info(string, ...any) }) {}
		}
		c.writeLine("%s OK Begin TLS negotiation now", cmd.tag)
		tc := tls.Server(c.raw, c.s.tls)
		if err := tc.HandshakeContext(ctx); err != nil {
			c.s.log.Info("connection closed: STARTTLS handshake failed", "remote", c.raw.RemoteAddr().String(), "err", err)
			return false, func(context.Context, interface{ Info(string, ...any) }) {}
		}
		c.nc, c.tls = tc, true
		c.br.Reset(tc)
		return true, nil
	case "LOGIN":
		if len(cmd.args) != 2 {
			c.writeLine("%s BAD LOGIN wants a user name and a password", cmd.tag)
			return false, nil
		}
		user, ok1 := cmd.args[0].text()
		pass, ok2 := cmd.args[1].text()
		if !ok1 || !ok2 {
			c.writeLine("%s BAD LOGIN wants a user name and a password", cmd.tag)
			return false, nil
		}
		return c.signIn(ctx, cmd.tag, user, pass)
	case "AUTHENTICATE":
		return c.authenticate(ctx, r, cmd)
	}
	c.writeLine("%s BAD Command not allowed before login", cmd.tag)
	return false, nil
}

func (c *conn) authenticate(ctx context.Context, r *commandReader, cmd *command) (bool, func(context.Context, interface{ Info(string, ...any) })) {
	if len(cmd.args) < 1 || len(cmd.args) > 2 {
		c.writeLine("%s BAD AUTHENTICATE wants a mechanism", cmd.tag)
		return false, nil
	}
	mech, _ := cmd.args[0].text()
	if upper(mech) != "PLAIN" {
		c.writeLine("%s NO [CANNOT] Only AUTHENTICATE PLAIN is supported", cmd.tag)
		return false, nil
	}
	var resp string
	if len(cmd.args) == 2 {
		resp, _ = cmd.args[1].text() // SASL-IR; "=" is an empty response
	} else {
		c.writeLine("+ ")
		budget := maxLine
		line, err := r.readLine(&budget)
		if err != nil {
			c.writeLine("* BYE Bad SASL response")
			return false, func(context.Context, interface{ Info(string, ...any) }) {}
		}
		resp = string(line)
	}
	if resp == "*" {
		c.writeLine("%s BAD AUTHENTICATE cancelled", cmd.tag)
		return false, nil
	}
	if resp == "=" {
		resp = ""
	}
	if len(resp) > 4*maxCredential {
		c.refuse(ctx, "", verifier.ReasonTooLong)
		c.writeLine("%s BAD SASL response too long", cmd.tag)
		return false, nil
	}
	raw, err := base64.StdEncoding.DecodeString(resp)
	if err != nil {
		c.writeLine("%s BAD SASL response is not base64", cmd.tag)
		return false, nil
	}
	var authz, user, pass string
	srv := sasl.NewPlainServer(func(identity, username, password string) error {
		authz, user, pass = identity, username, password
		return nil
	})
	if _, _, err := srv.Next(raw); err != nil {
		c.writeLine("%s BAD Malformed PLAIN response", cmd.tag)
		return false, nil
	}
	if authz != "" && authz != user {
		// Acting as someone else is what master users do upstream; a
		// client of stepgate never may.
		c.refuse(ctx, user, verifier.ReasonAuthzID)
		c.writeLine("%s NO [AUTHORIZATIONFAILED] Authorization identity must be the user", cmd.tag)
		return false, nil
	}
	return c.signIn(ctx, cmd.tag, user, pass)
}

// refuse audits a sign-in turned away before the verifier was asked.
func (c *conn) refuse(ctx context.Context, user string, r verifier.Reason) {
	c.s.v.Refuse(ctx, verifier.Attempt{Protocol: "imap", User: user, Remote: c.remote, TLS: c.tls}, r)
}

// signIn runs the verifier; on success the connection becomes a splice.
func (c *conn) signIn(ctx context.Context, tag, user, pass string) (bool, func(context.Context, interface{ Info(string, ...any) })) {
	if !c.loginAllowed() {
		c.refuse(ctx, user, verifier.ReasonPlainText)
		c.writeLine("%s NO [PRIVACYREQUIRED] Use STARTTLS or imaps to send a password", tag)
		return false, nil
	}
	if len(user) > maxCredential || len(pass) > maxCredential {
		c.refuse(ctx, user, verifier.ReasonTooLong)
		c.writeLine("%s NO [AUTHENTICATIONFAILED] %s", tag, genericFailure)
		return false, nil
	}
	a := verifier.Attempt{Protocol: "imap", User: accountName(c.s.cfg.LoginFormat, user), Secret: pass, Remote: c.remote, TLS: c.tls}
	chk := &checker{c: c, ctx: ctx, login: user}
	master := c.s.up.MasterUser != ""
	if !master {
		a.Password = chk
	}
	d := c.s.v.Verify(ctx, a)
	if !d.Allowed() {
		chk.drop()
		switch {
		case d.Unavailable():
			c.writeLine("%s NO [UNAVAILABLE] The mail server is unavailable, try again later", tag)
			return true, nil // not the client's fault
		case d.Busy():
			c.writeLine("%s NO [UNAVAILABLE] Too many sign-ins at once, try again shortly", tag)
			return true, nil
		case d.Message != "":
			c.writeLine("%s NO [AUTHENTICATIONFAILED] %s", tag, oneLine(d.Message))
		default:
			c.writeLine("%s NO [AUTHENTICATIONFAILED] %s", tag, genericFailure)
		}
		return false, nil
	}
	up := chk.up
	if up == nil {
		// Master-user mode (or a verifier that did not need the
		// upstream): log in on the user's behalf now.
		var err error
		if up, err = c.s.up.dial(ctx, c.raw.RemoteAddr()); err == nil {
			if master {
				err = up.login(c.s.up.MasterUser, c.s.up.MasterPassword, d.User)
			} else {
				err = up.login(user, pass, "")
			}
			if err != nil {
				up.close()
			}
		}
		if err != nil {
			c.s.log.Warn("upstream login failed after a good sign-in", "user", d.User, "err", err)
			c.writeLine("%s NO [UNAVAILABLE] The mail server is unavailable, try again later", tag)
			return true, nil
		}
	}
	c.mu.Lock()
	c.up = up
	c.mu.Unlock()
	caps := strings.Join(up.caps, " ")
	if c.writeLine("%s OK [CAPABILITY %s] Logged in through stepgate", tag, caps) != nil {
		return false, func(context.Context, interface{ Info(string, ...any) }) {}
	}
	var revoked <-chan struct{}
	if d.Session != nil {
		revoked = d.Session.Revoked()
	}
	return true, func(ctx context.Context, log interface{ Info(string, ...any) }) {
		log.Info("signed in, splicing to the mail server", "user", d.User)
		c.splice(ctx, revoked, log)
	}
}

// splice copies bytes both ways until either side ends, the server shuts
// down, or the session is revoked. Nothing is parsed any more.
func (c *conn) splice(ctx context.Context, revoked <-chan struct{}, log interface{ Info(string, ...any) }) {
	c.raw.SetDeadline(time.Time{})
	up := c.up
	done := make(chan struct{}, 2)
	go func() {
		pipe(up.nc, c.br, c.nc) // what the client pipelined after LOGIN, then the rest
		done <- struct{}{}
	}()
	go func() {
		pipe(c.nc, up.r, up.nc)
		done <- struct{}{}
	}()
	select {
	case <-done:
	case <-revoked:
		log.Info("connection closed: its session was revoked")
		c.writeLine("* BYE Session revoked")
	case <-ctx.Done():
	}
	c.closeAll()
	<-done
}

// pipe copies what br holds already, then src straight to dst: between
// two plain TCP connections io.Copy then moves the data in the kernel
// (splice(2)) instead of through a user-space buffer.
func pipe(dst io.Writer, br *bufio.Reader, src io.Reader) {
	if n := br.Buffered(); n > 0 {
		b, _ := br.Peek(n)
		if _, err := dst.Write(b); err != nil {
			return
		}
		br.Discard(n)
	}
	io.Copy(dst, src)
}

func oneLine(s string) string {
	return strings.NewReplacer("\r", " ", "\n", " ").Replace(s)
}

// checker is the verifier's password check for one sign-in: the login on
// this client's own upstream connection.
type checker struct {
	c   *conn
	ctx context.Context
	up  *upConn
	// login is the name exactly as the client gave it: the mail server
	// maps it to a mailbox its own way, which imap.login_format mirrors.
	login string
}

// CheckPassword logs in to the mail server with the client's login name
// and password; the account name the verifier passes is stepgate's.
func (k *checker) CheckPassword(ctx context.Context, _, password string) error {
	k.drop()
	up, err := k.c.s.up.dial(ctx, k.c.raw.RemoteAddr())
	if err == nil {
		if err = up.login(k.login, password, ""); err != nil {
			up.close()
		}
	}
	if errors.Is(err, verifier.ErrUnavailable) {
		// The verifier reports only "unavailable"; the operator needs why.
		k.c.s.log.Warn("mail server unavailable", "upstream", k.c.s.up.Addr, "err", err)
	}
	if err != nil {
		return err
	}
	k.up = up
	return nil
}

func (k *checker) drop() {
	if k.up != nil {
		k.up.close()
		k.up = nil
	}
}
