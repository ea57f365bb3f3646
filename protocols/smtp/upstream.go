package smtp

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/stepgate/stepgate/internal/relay"
	"github.com/stepgate/stepgate/internal/verifier"
)

// upLogin is SMTP on one connection to the mail server, up to and
// including AUTH; nothing reads past AUTH's answer, since what follows is
// the client's.
type upLogin struct {
	u    *relay.UpConn
	ehlo []string // the extensions of the last EHLO answer
}

// Open reads the greeting, says EHLO, turns on STARTTLS as configured,
// and names the client with XCLIENT where the mail server offers it
// (Postfix does to smtpd_authorized_xclient_hosts), so it logs, limits
// and bans the real client. Each EHLO tells the front end what the mail
// server offers now.
func (p *protocol) Open(ctx context.Context, u *relay.UpConn, starttls bool, client net.Addr) (relay.Login, error) {
	c := &upLogin{u: u}
	if code, text, err := c.reply(); err != nil || code != 220 {
		return nil, fmt.Errorf("greeting %d %q %v", code, truncate(text), err)
	}
	if err := c.hello(); err != nil {
		return nil, err
	}
	if starttls {
		if code, text, err := c.command("STARTTLS"); err != nil || code != 220 {
			return nil, fmt.Errorf("STARTTLS: %d %q %v", code, truncate(text), err)
		}
		if err := u.StartTLS(ctx); err != nil {
			return nil, err
		}
		if err := c.hello(); err != nil {
			return nil, err
		}
	}
	if x, ok := c.extension("XCLIENT"); ok && client != nil {
		if err := c.xclient(x, client); err != nil {
			return nil, err
		}
	}
	p.learn(c.ehlo)
	return c, nil
}

func (c *upLogin) hello() error {
	code, text, err := c.command("EHLO " + hostname)
	if err != nil || code != 250 {
		return fmt.Errorf("EHLO: %d %q %v", code, truncate(text), err)
	}
	lines := strings.Split(text, "\n")
	c.ehlo = lines[1:] // the first line is the server's name
	return nil
}

// extension returns the parameters of an EHLO extension.
func (c *upLogin) extension(name string) (string, bool) {
	for _, l := range c.ehlo {
		k, params, _ := strings.Cut(l, " ")
		if strings.EqualFold(k, name) {
			return params, true
		}
	}
	return "", false
}

// xclient sends the attributes the mail server takes of ADDR and PORT;
// it answers with a new greeting, after which the session starts over.
func (c *upLogin) xclient(attrs string, client net.Addr) error {
	host, port, err := net.SplitHostPort(client.String())
	if err != nil {
		return fmt.Errorf("XCLIENT: %w", err)
	}
	takes := map[string]bool{}
	for _, a := range strings.Fields(strings.ToUpper(attrs)) {
		takes[a] = true
	}
	if !takes["ADDR"] {
		return nil
	}
	if strings.Contains(host, ":") {
		host = "IPV6:" + host
	}
	cmd := "XCLIENT ADDR=" + host
	if takes["PORT"] && port != "0" {
		cmd += " PORT=" + port
	}
	code, text, err := c.command(cmd)
	if err != nil || code != 220 {
		return fmt.Errorf("XCLIENT: %d %q %v", code, truncate(text), err)
	}
	return c.hello()
}

// Login authenticates as the user (PLAIN, else LOGIN); authz, when set,
// is the user a master user acts as.
func (c *upLogin) Login(user, password, authz string) error {
	mechs, _ := c.extension("AUTH")
	has := func(m string) bool {
		for _, x := range strings.Fields(mechs) {
			if strings.EqualFold(x, m) {
				return true
			}
		}
		return false
	}
	var code int
	var text string
	var err error
	b64 := base64.StdEncoding.EncodeToString
	switch {
	case has("PLAIN"):
		code, text, err = c.command("AUTH PLAIN " + b64([]byte(authz+"\x00"+user+"\x00"+password)))
	case authz != "":
		return errors.New("the mail server offers no AUTH PLAIN for a master-user login")
	case has("LOGIN"):
		if code, text, err = c.command("AUTH LOGIN " + b64([]byte(user))); err == nil && code == 334 {
			code, text, err = c.command(b64([]byte(password)))
		}
	default:
		return errors.New("the mail server offers neither AUTH PLAIN nor LOGIN")
	}
	switch {
	case err != nil:
		return err
	case code == 235:
		c.u.Conn().SetDeadline(time.Time{})
		return nil
	case code == 535:
		return verifier.ErrBadPassword
	}
	// 454 and the like: the mail server could not tell.
	return fmt.Errorf("AUTH answered %d %q", code, truncate(text))
}

func (c *upLogin) command(cmd string) (int, string, error) {
	if _, err := c.u.Conn().Write([]byte(cmd + "\r\n")); err != nil {
		return 0, "", err
	}
	return c.reply()
}

// reply reads one reply, all its lines; text is their texts joined by
// "\n".
func (c *upLogin) reply() (int, string, error) {
	var texts []string
	for n := 0; ; n++ {
		budget := 4 << 10
		l, err := relay.ReadLine(c.u.Reader(), &budget)
		if err != nil {
			return 0, "", err
		}
		if len(l) < 3 || n > 100 {
			return 0, "", fmt.Errorf("bad reply line %q", truncate(string(l)))
		}
		code, err := strconv.Atoi(string(l[:3]))
		if err != nil {
			return 0, "", fmt.Errorf("bad reply line %q", truncate(string(l)))
		}
		more := len(l) > 3 && l[3] == '-'
		if len(l) > 4 {
			texts = append(texts, string(l[4:]))
		} else {
			texts = append(texts, "")
		}
		if !more {
			return code, strings.Join(texts, "\n"), nil
		}
	}
}

func truncate(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}
