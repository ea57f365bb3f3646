package imap

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/stepgate/stepgate/internal/verifier"
)

// Upstream is the mail server behind the front end.
type Upstream struct {
	// Addr is host:port.
	Addr string
	// TLS is "none", "starttls" or "implicit".
	TLS string
	// CAFile, when set, is the only CA trusted for the upstream.
	CAFile string
	// MasterUser and MasterPassword, when set, log in as every user
	// (PLAIN with the user as authorization identity, as Dovecot's master
	// users allow); passwords are then checked by stepgate itself.
	MasterUser, MasterPassword string
	// Timeout bounds the dial and the login dialogue.
	Timeout time.Duration
}

// upstream dials the mail server.
type upstream struct {
	Upstream
	tls *tls.Config
}

func newUpstream(u Upstream) (*upstream, error) {
	switch u.TLS {
	case "", "none":
		u.TLS = "none"
	case "starttls", "implicit":
	default:
		return nil, fmt.Errorf("imap.upstream.tls %q: want none, starttls or implicit", u.TLS)
	}
	host, _, err := net.SplitHostPort(u.Addr)
	if err != nil {
		return nil, fmt.Errorf("imap.upstream %q: %w", u.Addr, err)
	}
	if u.Timeout <= 0 {
		u.Timeout = 15 * time.Second
	}
	up := &upstream{Upstream: u, tls: &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}}
	if u.CAFile != "" {
		pem, err := os.ReadFile(u.CAFile)
		if err != nil {
			return nil, fmt.Errorf("imap.upstream.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("imap.upstream.ca_file %s: no PEM certificate in it", u.CAFile)
		}
		up.tls.RootCAs = pool
	}
	return up, nil
}

// upConn is one logged-in (or logging-in) connection to the mail server.
type upConn struct {
	nc   net.Conn
	r    *bufio.Reader
	caps []string
	tags int
}

// unavailable wraps err so that the verifier reports the backend down.
func unavailable(err error) error {
	return fmt.Errorf("%w: imap upstream: %v", verifier.ErrUnavailable, err)
}

// dial connects, reads the greeting, turns on TLS as configured and sends
// ID with the client's address so the mail server logs, limits and bans
// the real client (Dovecot honours it from login_trusted_networks).
func (u *upstream) dial(ctx context.Context, client net.Addr) (*upConn, error) {
	ctx, cancel := context.WithTimeout(ctx, u.Timeout)
	defer cancel()
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", u.Addr)
	if err != nil {
		return nil, unavailable(err)
	}
	if tc, ok := nc.(*net.TCPConn); ok {
		tc.SetKeepAlive(true)
	}
	dl, _ := ctx.Deadline()
	nc.SetDeadline(dl)
	if u.TLS == "implicit" {
		nc = tls.Client(nc, u.tls)
	}
	c := &upConn{nc: nc, r: bufio.NewReader(nc)}
	fail := func(err error) (*upConn, error) { nc.Close(); return nil, unavailable(err) }
	greeting, err := c.readLine()
	if err != nil {
		return fail(err)
	}
	if !strings.HasPrefix(greeting, "* OK") {
		return fail(fmt.Errorf("greeting %q", truncate(greeting)))
	}
	if u.TLS == "starttls" {
		if st, text, err := c.command("STARTTLS"); err != nil || st != "OK" {
			return fail(fmt.Errorf("STARTTLS: %s %s %v", st, text, err))
		}
		tc := tls.Client(nc, u.tls)
		if err := tc.HandshakeContext(ctx); err != nil {
			return fail(err)
		}
		c.nc, c.r = tc, bufio.NewReader(tc)
	}
	if _, _, err := c.command("CAPABILITY"); err != nil {
		return fail(err)
	}
	if c.has("ID") {
		host, port, _ := net.SplitHostPort(client.String())
		id := fmt.Sprintf(`ID ("x-originating-ip" %s "x-originating-port" %s "name" "stepgate")`, quote(host), quote(port))
		if _, _, err := c.command(id); err != nil {
			return fail(err)
		}
	}
	return c, nil
}

// login signs in as user with password; authz, when set, is the user to
// act as (master-user login).
func (c *upConn) login(user, password, authz string) error {
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
		return unavailable(errors.New("the mail server offers no AUTH=PLAIN for a master-user login"))
	}
	switch {
	case err != nil:
		return unavailable(err)
	case st == "OK":
		c.nc.SetDeadline(time.Time{})
		if code := respCode(text); strings.HasPrefix(upper(code), "CAPABILITY ") {
			c.caps = strings.Fields(code)[1:]
			return nil
		}
		if _, _, err := c.command("CAPABILITY"); err != nil {
			return unavailable(err)
		}
		return nil
	case st == "NO" && strings.HasPrefix(upper(respCode(text)), "UNAVAILABLE"):
		return unavailable(errors.New("the mail server is unavailable"))
	case st == "NO":
		return verifier.ErrBadPassword
	}
	return unavailable(fmt.Errorf("login answered %s", st))
}

// loginLiterals sends LOGIN with both strings as literals, so no quoting
// rule can go wrong.
func (c *upConn) loginLiterals(user, password string) (string, string, error) {
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
		if _, err := c.nc.Write([]byte(p + "\r\n")); err != nil {
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

func (c *upConn) has(capability string) bool {
	for _, x := range c.caps {
		if strings.EqualFold(x, capability) {
			return true
		}
	}
	return false
}

func (c *upConn) nextTag() string { c.tags++; return "sg" + strconv.Itoa(c.tags) }

// command sends one command and reads to its tagged response, keeping
// what an untagged CAPABILITY says.
func (c *upConn) command(cmd string) (status, text string, err error) {
	tag := c.nextTag()
	if _, err := c.nc.Write([]byte(tag + " " + cmd + "\r\n")); err != nil {
		return "", "", err
	}
	return c.response(tag)
}

func (c *upConn) commandWithContinuation(cmd, data string) (string, string, error) {
	tag := c.nextTag()
	if _, err := c.nc.Write([]byte(tag + " " + cmd + "\r\n")); err != nil {
		return "", "", err
	}
	line, err := c.readLine()
	if err != nil {
		return "", "", err
	}
	if !strings.HasPrefix(line, "+") {
		return c.tagged(tag, line)
	}
	if _, err := c.nc.Write([]byte(data + "\r\n")); err != nil {
		return "", "", err
	}
	return c.response(tag)
}

func (c *upConn) response(tag string) (string, string, error) {
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

func (c *upConn) tagged(tag, line string) (string, string, error) {
	rest, ok := strings.CutPrefix(line, tag+" ")
	if !ok {
		return "", "", fmt.Errorf("unexpected response %q", truncate(line))
	}
	st, text, _ := strings.Cut(rest, " ")
	return upper(st), text, nil
}

// readLine reads one response line; literals in it are read and replaced
// by a placeholder (stepgate never needs their content before login).
func (c *upConn) readLine() (string, error) {
	var b strings.Builder
	for {
		line, err := c.r.ReadString('\n')
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
			if _, err := c.r.Discard(n); err != nil {
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

func (c *upConn) close() { c.nc.Close() }

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
func (u *upstream) probe(ctx context.Context) error {
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
	opts := &imapclient.Options{TLSConfig: u.tls}
	var c *imapclient.Client
	switch u.TLS {
	case "implicit":
		tc := tls.Client(nc, u.tls)
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
