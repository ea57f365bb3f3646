package imap

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/stepgate/stepgate/internal/relay"
	"github.com/stepgate/stepgate/internal/verifier"
)

// Upstream is the mail server behind the front end.
type Upstream = relay.Upstream

// upLogin is IMAP on one connection to the mail server, up to and
// including the login. It is a few lines of raw IMAP rather than go-imap's
// imapclient: once logged in the connection is spliced to the client, so
// nothing may read past the login's tagged answer (imapclient reads ahead
// in its own goroutine and buffer, which cannot be handed over), and the
// mail server's capability list is passed to the client as it came.
type upLogin struct {
	u    *relay.UpConn
	caps []string
	tags int
}

// Open reads the greeting, turns on STARTTLS as configured and sends ID
// with the client's address so the mail server logs, limits and bans the
// real client (Dovecot honours it from login_trusted_networks).
func (protocol) Open(ctx context.Context, u *relay.UpConn, starttls bool, client net.Addr) (relay.Login, error) {
	c := &upLogin{u: u}
	greeting, err := c.readLine()
	if err != nil {
		return nil, err
	}
	if !strings.HasPrefix(greeting, "* OK") {
		return nil, fmt.Errorf("greeting %q", truncate(greeting))
	}
	if starttls {
		if st, text, err := c.command("STARTTLS"); err != nil || st != "OK" {
			return nil, fmt.Errorf("STARTTLS: %s %s %v", st, text, err)
		}
		if err := u.StartTLS(ctx); err != nil {
			return nil, err
		}
	}
	if _, _, err := c.command("CAPABILITY"); err != nil {
		return nil, err
	}
	if c.has("ID") && client != nil {
		host, port, _ := net.SplitHostPort(client.String())
		fields := `"x-originating-ip" ` + quote(host)
		if port != "0" { // a trusted front that named no port
			fields += ` "x-originating-port" ` + quote(port)
		}
		id := fmt.Sprintf(`ID (%s "name" "stepgate")`, fields)
		if _, _, err := c.command(id); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// login signs in as user with password; authz, when set, is the user to
// act as (master-user login).
func (c *upLogin) Login(user, password, authz string) error {
	var st, text string
	var err error
	if c.has("AUTH=PLAIN") {
		ir := base64.StdEncoding.EncodeToString([]byte(authz + "\x00" + user + "\x00" + password))
		if c.has("SASL-IR") {
			st, text, err = c.command("AUTHENTICATE PLAIN " + ir)
		} else {
			st, text, err = c.commandWithContinuation("AUTHENTICATE PLAIN", ir)
		}
	} else if authz == "" {
		st, text, err = c.loginLiterals(user, password)
	} else {
		return errors.New("the mail server offers no AUTH=PLAIN for a master-user login")
	}
	// Errors other than a wrong password reach the verifier as
	// "unavailable" (the relay wraps them).
	switch {
	case err != nil:
		return err
	case st == "OK":
		c.u.Conn().SetDeadline(time.Time{})
		if code := respCode(text); strings.HasPrefix(upper(code), "CAPABILITY ") {
			c.caps = strings.Fields(code)[1:]
			return nil
		}
		if _, _, err := c.command("CAPABILITY"); err != nil {
			return err
		}
		return nil
	case st == "NO" && strings.HasPrefix(upper(respCode(text)), "UNAVAILABLE"):
		return errors.New("the mail server is unavailable")
	case st == "NO":
		return verifier.ErrBadPassword
	}
	return fmt.Errorf("login answered %s", st)
}

// loginLiterals sends LOGIN with both strings as literals, so no quoting
// rule can go wrong.
func (c *upLogin) loginLiterals(user, password string) (string, string, error) {
	plus := c.has("LITERAL+")
	lit := func(s string) string {
		if plus {
			return "{" + strconv.Itoa(len(s)) + "+}"
		}
		return "{" + strconv.Itoa(len(s)) + "}"
	}
	tag := c.nextTag()
	parts := []string{tag + " LOGIN " + lit(user), user + " " + lit(password), password}
	for i, p := range parts {
		if _, err := c.u.Conn().Write([]byte(p + "\r\n")); err != nil {
			return "", "", err
		}
		if !plus && i < len(parts)-1 {
			line, err := c.readLine()
			if err != nil {
				return "", "", err
			}
			if !strings.HasPrefix(line, "+") {
				return c.tagged(tag, line)
			}
		}
	}
	return c.response(tag)
}

func (c *upLogin) has(capability string) bool {
	for _, x := range c.caps {
		if strings.EqualFold(x, capability) {
			return true
		}
	}
	return false
}

func (c *upLogin) nextTag() string { c.tags++; return "sg" + strconv.Itoa(c.tags) }

// command sends one command and reads to its tagged response, keeping
// what an untagged CAPABILITY says.
func (c *upLogin) command(cmd string) (status, text string, err error) {
	tag := c.nextTag()
	if _, err := c.u.Conn().Write([]byte(tag + " " + cmd + "\r\n")); err != nil {
		return "", "", err
	}
	return c.response(tag)
}

func (c *upLogin) commandWithContinuation(cmd, data string) (string, string, error) {
	tag := c.nextTag()
	if _, err := c.u.Conn().Write([]byte(tag + " " + cmd + "\r\n")); err != nil {
		return "", "", err
	}
	line, err := c.readLine()
	if err != nil {
		return "", "", err
	}
	if !strings.HasPrefix(line, "+") {
		return c.tagged(tag, line)
	}
	if _, err := c.u.Conn().Write([]byte(data + "\r\n")); err != nil {
		return "", "", err
	}
	return c.response(tag)
}

func (c *upLogin) response(tag string) (string, string, error) {
	for {
		line, err := c.readLine()
		if err != nil {
			return "", "", err
		}
		if strings.HasPrefix(line, "* ") {
			if f := strings.Fields(line); len(f) > 1 && upper(f[1]) == "CAPABILITY" {
				c.caps = f[2:]
			} else if len(f) > 1 && upper(f[1]) == "BYE" {
				return "", "", fmt.Errorf("the mail server said %q", truncate(line))
			}
			continue
		}
		if strings.HasPrefix(line, tag+" ") {
			return c.tagged(tag, line)
		}
		if strings.HasPrefix(line, "+") {
			return "", "", errors.New("unexpected continuation request")
		}
	}
}

func (c *upLogin) tagged(tag, line string) (string, string, error) {
	rest, ok := strings.CutPrefix(line, tag+" ")
	if !ok {
		return "", "", fmt.Errorf("unexpected response %q", truncate(line))
	}
	st, text, _ := strings.Cut(rest, " ")
	return upper(st), text, nil
}

// readLine reads one response line; literals in it are read and replaced
// by a placeholder (stepgate never needs their content before login).
func (c *upLogin) readLine() (string, error) {
	var b strings.Builder
	for {
		line, err := c.u.Reader().ReadString('\n')
		if err != nil {
			return "", err
		}
		if b.Len()+len(line) > 64<<10 {
			return "", errors.New("response line too long")
		}
		line = strings.TrimRight(line, "\r\n")
		b.WriteString(line)
		if n, ok := trailingLiteral(line); ok {
			if n > 64<<10 {
				return "", errors.New("literal too long")
			}
			if _, err := c.u.Reader().Discard(n); err != nil {
				return "", err
			}
			continue
		}
		return b.String(), nil
	}
}

func trailingLiteral(line string) (int, bool) {
	if !strings.HasSuffix(line, "}") {
		return 0, false
	}
	i := strings.LastIndexByte(line, '{')
	if i < 0 {
		return 0, false
	}
	n, err := strconv.Atoi(strings.TrimSuffix(line[i+1:len(line)-1], "+"))
	return n, err == nil && n >= 0
}

// respCode is the text of a response code ("[CAPABILITY ...]"), or "".
func respCode(text string) string {
	if !strings.HasPrefix(text, "[") {
		return ""
	}
	if i := strings.IndexByte(text, ']'); i > 0 {
		return text[1:i]
	}
	return ""
}

func quote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

func truncate(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

// probe checks that the mail server answers, with go-imap's client: a
// greeting, TLS as configured, and CAPABILITY.
func probe(ctx context.Context, u *relay.Dialer) error {
	ctx, cancel := context.WithTimeout(ctx, u.Timeout)
	defer cancel()
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", u.Addr)
	if err != nil {
		return fmt.Errorf("imap upstream %s: %w", u.Addr, err)
	}
	defer nc.Close()
	if dl, ok := ctx.Deadline(); ok {
		nc.SetDeadline(dl)
	}
	opts := &imapclient.Options{TLSConfig: u.TLSConfig()}
	var c *imapclient.Client
	switch u.TLS {
	case "implicit":
		tc := tls.Client(nc, u.TLSConfig())
		c = imapclient.New(tc, opts)
	case "starttls":
		c, err = imapclient.NewStartTLS(nc, opts)
		if err != nil {
			return fmt.Errorf("imap upstream %s: STARTTLS: %w", u.Addr, err)
		}
	default:
		c = imapclient.New(nc, opts)
	}
	defer c.Close()
	if _, err := c.Capability().Wait(); err != nil {
		return fmt.Errorf("imap upstream %s: %w", u.Addr, err)
	}
	c.Logout()
	return nil
}
