package relay

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/stepgate/stepgate/internal/certpool"
	"github.com/stepgate/stepgate/internal/verifier"
)

// Upstream is the mail server behind a front end.
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

// Dialer connects to the mail server.
type Dialer struct {
	Upstream
	name string // the protocol, for errors and config keys
	tls  *tls.Config
}

// NewDialer checks u; name is the protocol ("imap"), whose config keys
// (imap.upstream.tls) errors name.
func NewDialer(name string, u Upstream) (*Dialer, error) {
	switch u.TLS {
	case "", "none":
		u.TLS = "none"
	case "starttls", "implicit":
	default:
		return nil, fmt.Errorf("%s.upstream.tls %q: want none, starttls or implicit", name, u.TLS)
	}
	host, _, err := net.SplitHostPort(u.Addr)
	if err != nil {
		return nil, fmt.Errorf("%s.upstream %q: %w", name, u.Addr, err)
	}
	if u.Timeout <= 0 {
		u.Timeout = 15 * time.Second
	}
	d := &Dialer{Upstream: u, name: name, tls: &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}}
	pool, err := certpool.Load(name+".upstream.ca_file", u.CAFile)
	if err != nil {
		return nil, err
	}
	d.tls.RootCAs = pool
	return d, nil
}

// TLSConfig is the client TLS configuration for the mail server (its
// name, and the CA when one is set).
func (d *Dialer) TLSConfig() *tls.Config { return d.tls }

// UpConn is one connection to the mail server, logging in or logged in.
type UpConn struct {
	nc  net.Conn
	r   *bufio.Reader
	tls *tls.Config
	// Login is the protocol's login on this connection.
	Login Login
}

// Conn is the connection as it is now (TLS once started); a protocol
// writes its commands to it.
func (u *UpConn) Conn() net.Conn { return u.nc }

// Reader reads the mail server's answers. After login whatever it holds
// is relayed to the client first, so a protocol reads no further than
// its login's last answer.
func (u *UpConn) Reader() *bufio.Reader { return u.r }

// StartTLS turns on TLS once the mail server has agreed to STARTTLS.
func (u *UpConn) StartTLS(ctx context.Context) error {
	tc := tls.Client(u.nc, u.tls)
	if err := tc.HandshakeContext(ctx); err != nil {
		return err
	}
	u.nc, u.r = tc, bufio.NewReader(tc)
	return nil
}

// Close closes the connection.
func (u *UpConn) Close() { u.nc.Close() }

// unavailable wraps err so that the verifier reports the backend down.
func (d *Dialer) unavailable(err error) error {
	if errors.Is(err, verifier.ErrUnavailable) {
		return err
	}
	return fmt.Errorf("%w: %s upstream: %v", verifier.ErrUnavailable, d.name, err)
}

// open connects, with TLS as configured, and lets the protocol take the
// connection to the point of login. client is the client's address, for
// the mail server to log, limit and ban the real client.
func (d *Dialer) open(ctx context.Context, p Protocol, client net.Addr) (*UpConn, error) {
	ctx, cancel := context.WithTimeout(ctx, d.Timeout)
	defer cancel()
	var nd net.Dialer
	nc, err := nd.DialContext(ctx, "tcp", d.Addr)
	if err != nil {
		return nil, d.unavailable(err)
	}
	if tc, ok := nc.(*net.TCPConn); ok {
		tc.SetKeepAlive(true)
	}
	// The deadline stays for the login; the protocol lifts it once
	// logged in.
	dl, _ := ctx.Deadline()
	nc.SetDeadline(dl)
	if d.TLS == "implicit" {
		nc = tls.Client(nc, d.tls)
	}
	u := &UpConn{nc: nc, r: bufio.NewReader(nc), tls: d.tls}
	if u.Login, err = p.Open(ctx, u, d.TLS == "starttls", client); err != nil {
		u.Close()
		return nil, d.unavailable(err)
	}
	return u, nil
}

// login runs the protocol's login; every error but a wrong password
// means the mail server could not tell.
func (u *UpConn) login(d *Dialer, user, password, authz string) error {
	err := u.Login.Login(user, password, authz)
	if err == nil || errors.Is(err, verifier.ErrBadPassword) {
		return err
	}
	return d.unavailable(err)
}

// Check takes a fresh connection to the mail server to the point of
// login, as a sign-in would, and closes it: the readiness probe, and how
// a protocol learns what the mail server offers before any client signs
// in (SMTP's EHLO). No client address is announced (client is nil
// for Protocol.Open).
func (d *Dialer) Check(ctx context.Context, p Protocol) error {
	u, err := d.open(ctx, p, nil)
	if err != nil {
		return err
	}
	u.Close()
	return nil
}
