package pop3

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/stepgate/stepgate/internal/relay"
	"github.com/stepgate/stepgate/internal/verifier"
)

// upLogin is POP3 on one connection to the mail server, up to and
// including the login; nothing reads past the login's answer, since what
// follows is the client's.
type upLogin struct {
	u    *relay.UpConn
	caps []string
}

// Open reads the greeting, turns on STLS as configured, reads CAPA and
// names the client with XCLIENT where the server offers it (Dovecot does
// to login_trusted_networks, in its greeting), so it logs, limits and bans the real client.
func (protocol) Open(ctx context.Context, u *relay.UpConn, starttls bool, client net.Addr) (relay.Login, error) {
	c := &upLogin{u: u}
	ok, greeting, err := c.status()
	if err != nil || !ok {
		return nil, fmt.Errorf("greeting: %q %v", truncate(greeting), err)
	}
	// Dovecot offers XCLIENT in the greeting's response code, to trusted
	// peers only.
	xclient := strings.HasPrefix(greeting, "[XCLIENT]")
	if err := c.capa(); err != nil {
		return nil, err
	}
	if starttls {
		if ok, text, err := c.command("STLS"); err != nil || !ok {
			return nil, fmt.Errorf("STLS: %q %v", truncate(text), err)
		}
		if err := u.StartTLS(ctx); err != nil {
			return nil, err
		}
		if err := c.capa(); err != nil {
			return nil, err
		}
	}
	if (xclient || c.has("XCLIENT")) && client != nil {
		host, port, _ := net.SplitHostPort(client.String())
		cmd := "XCLIENT ADDR=" + host
		if port != "0" && port != "" {
			cmd += " PORT=" + port
		}
		if ok, text, err := c.command(cmd); err != nil || !ok {
			return nil, fmt.Errorf("XCLIENT: %q %v", truncate(text), err)
		}
	}
	return c, nil
}

// Login signs in with AUTH PLAIN where offered (the only way to act as
// another user, authz), else USER and PASS.
func (c *upLogin) Login(user, password, authz string) error {
	var ok bool
	var text string
	var err error
	switch {
	case c.hasSASL("PLAIN"):
		ir := base64.StdEncoding.EncodeToString([]byte(authz + "\x00" + user + "\x00" + password))
		ok, text, err = c.command("AUTH PLAIN " + ir)
	case authz != "":
		return errors.New("the mail server offers no SASL PLAIN for a master-user login")
	case strings.ContainsAny(user+password, "\r\n\x00"):
		// On a command line they would end it and start another.
		return verifier.ErrBadPassword
	default:
		if ok, text, err = c.command("USER " + user); err == nil && ok {
			ok, text, err = c.command("PASS " + password)
		}
	}
	switch {
	case err != nil:
		return err
	case ok:
		c.u.Conn().SetDeadline(time.Time{})
		return nil
	case strings.HasPrefix(text, "[SYS/") || strings.HasPrefix(text, "[IN-USE]"):
		return fmt.Errorf("the mail server refused for a reason of its own: %q", truncate(text))
	}
	return verifier.ErrBadPassword
}

func (c *upLogin) has(capability string) bool {
	for _, x := range c.caps {
		if f := strings.Fields(x); len(f) > 0 && strings.EqualFold(f[0], capability) {
			return true
		}
	}
	return false
}

func (c *upLogin) hasSASL(mech string) bool {
	for _, x := range c.caps {
		f := strings.Fields(x)
		if len(f) == 0 || !strings.EqualFold(f[0], "SASL") {
			continue
		}
		for _, m := range f[1:] {
			if strings.EqualFold(m, mech) {
				return true
			}
		}
	}
	return false
}

// capa reads the capability list; a server without CAPA has none.
func (c *upLogin) capa() error {
	ok, _, err := c.command("CAPA")
	if err != nil || !ok {
		c.caps = nil
		return err
	}
	c.caps = c.caps[:0]
	for n := 0; ; n++ {
		line, err := c.readLine()
		if err != nil {
			return err
		}
		if line == "." {
			return nil
		}
		if n > 100 {
			return errors.New("CAPA list too long")
		}
		c.caps = append(c.caps, line)
	}
}

func (c *upLogin) command(cmd string) (bool, string, error) {
	if _, err := c.u.Conn().Write([]byte(cmd + "\r\n")); err != nil {
		return false, "", err
	}
	return c.status()
}

// status reads a +OK or -ERR line; text is what follows it.
func (c *upLogin) status() (bool, string, error) {
	line, err := c.readLine()
	if err != nil {
		return false, "", err
	}
	if rest, ok := strings.CutPrefix(line, "+OK"); ok {
		return true, strings.TrimSpace(rest), nil
	}
	if rest, ok := strings.CutPrefix(line, "-ERR"); ok {
		return false, strings.TrimSpace(rest), nil
	}
	return false, line, fmt.Errorf("unexpected answer %q", truncate(line))
}

func (c *upLogin) readLine() (string, error) {
	budget := 4 << 10
	line, err := relay.ReadLine(c.u.Reader(), &budget)
	return string(line), err
}

func truncate(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}
