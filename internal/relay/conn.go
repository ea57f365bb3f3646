package relay

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"

	"github.com/stepgate/stepgate/internal/verifier"
)

// MaxCredential caps a user name, a password or a SASL response before
// login: nothing legitimate comes close.
const MaxCredential = 1 << 10

// Conn is one client connection before login; after login it becomes a
// splice to the mail server.
type Conn struct {
	r    *Relay
	raw  net.Conn // what is closed at shutdown
	nc   net.Conn // raw, or TLS over it
	br   *bufio.Reader
	peer string // the connection's own address, without the port
	// remote is the client's address without the port: the peer's, or
	// the one a trusted front named (Originating). It takes the
	// per-address budget and the audit event.
	remote string
	// client is the client's address and port as the mail server is
	// told of it.
	client net.Addr
	tls    bool
	log    *slog.Logger

	signedIn verifier.Decision // the decision that let the client in

	mu sync.Mutex
	up *UpConn // set once logged in upstream
}

func newConn(r *Relay, raw, nc net.Conn, implicitTLS bool) *Conn {
	host, _, err := net.SplitHostPort(raw.RemoteAddr().String())
	if err != nil {
		host = raw.RemoteAddr().String()
	}
	return &Conn{r: r, raw: raw, nc: nc, br: bufio.NewReaderSize(nc, 4096), peer: host, remote: host,
		client: raw.RemoteAddr(), tls: implicitTLS, log: r.log.With("remote", raw.RemoteAddr().String())}
}

// Originating takes the real client's address and port from a front
// (webmail, a proxy) that signs its users in through this connection,
// as IMAP's ID "x-originating-ip" gives them, and reports whether it
// did: only a peer in the trusted networks may name it. From anyone
// else it is ignored, or a client could pick whose budget its guesses
// spend. The plain-text rule stays the peer's: it is that hop the
// password crosses.
func (c *Conn) Originating(ip, port string) bool {
	if !c.r.cfg.TrustedNetworks.Contains(c.peer) {
		c.log.Debug("originating address from an untrusted peer ignored", "claimed", ip)
		return false
	}
	a, err := netip.ParseAddr(ip)
	if err != nil {
		c.log.Info("originating address from a trusted peer is not an address, ignored", "claimed", ip)
		return false
	}
	p, _ := strconv.ParseUint(port, 10, 16)
	ap := netip.AddrPortFrom(a.Unmap().WithZone(""), uint16(p))
	c.remote, c.client = ap.Addr().String(), net.TCPAddrFromAddrPort(ap)
	c.log = c.log.With("client", ap.Addr().String())
	return true
}

func (c *Conn) closeAll() {
	c.raw.Close()
	c.mu.Lock()
	if c.up != nil {
		c.up.Close()
	}
	c.mu.Unlock()
}

// Reader reads what the client sent; read it through ReadLine or with
// the protocol's own caps.
func (c *Conn) Reader() *bufio.Reader { return c.br }

// Log is the front end's logger with the client's address.
func (c *Conn) Log() *slog.Logger { return c.log }

// WriteLine writes one line and CRLF to the client.
func (c *Conn) WriteLine(format string, args ...any) error {
	_, err := fmt.Fprintf(c.nc, format+"\r\n", args...)
	return err
}

// LoginAllowed: plain-text passwords only over TLS or from this machine.
func (c *Conn) LoginAllowed() bool {
	if c.tls || c.r.cfg.AllowPlainRemote {
		return true
	}
	ip := net.ParseIP(c.peer)
	return ip != nil && ip.IsLoopback()
}

// CanStartTLS reports whether STARTTLS is on offer.
func (c *Conn) CanStartTLS() bool { return c.r.cfg.TLS != nil && !c.tls }

// Pipelined reports whether the client sent bytes past the command just
// read: after STARTTLS they would be taken as if encrypted.
func (c *Conn) Pipelined() bool { return c.br.Buffered() > 0 }

// StartTLS runs the server side of the TLS handshake, once the protocol
// has told the client to begin; on failure the connection is to close.
func (c *Conn) StartTLS(ctx context.Context) error {
	tc := tls.Server(c.raw, c.r.cfg.TLS)
	if err := tc.HandshakeContext(ctx); err != nil {
		c.log.Info("connection closed: STARTTLS handshake failed", "err", err)
		return fmt.Errorf("STARTTLS handshake: %w", err)
	}
	c.nc, c.tls = tc, true
	c.br.Reset(tc)
	return nil
}

// Refuse audits a sign-in turned away before the verifier was asked.
func (c *Conn) Refuse(ctx context.Context, user string, r verifier.Reason) {
	c.r.v.Refuse(ctx, verifier.Attempt{Protocol: c.r.cfg.Protocol, User: user, Remote: c.remote, TLS: c.tls}, r)
}

// Result is how a sign-in ended, for the protocol to answer.
type Result int

// Results of SignIn.
const (
	// SignedIn: the client is logged in upstream; answer, then Splice.
	SignedIn Result = iota
	// PrivacyRequired: a password in clear from afar, refused and
	// audited.
	PrivacyRequired
	// Denied: a failed sign-in (Message may say more).
	Denied
	// Unavailable: the mail server could not be reached; not the
	// client's fault.
	Unavailable
	// Busy: too many sign-ins at once; not the client's fault either.
	Busy
)

// SignIn is the outcome of Conn.SignIn.
type SignIn struct {
	Result Result
	// Message is the verifier's text for the person at the client, on
	// Denied ("" for the generic failure).
	Message string
	// Upstream is the protocol's Login of the upstream connection on
	// SignedIn (the protocol's own type, for what its answer needs).
	Upstream Login
}

// SignIn checks login (the name exactly as the client sent it) and
// secret through the verifier; on success the client's upstream
// connection is logged in and the connection splices after the
// protocol's answer.
func (c *Conn) SignIn(ctx context.Context, login, secret string) SignIn {
	if !c.LoginAllowed() {
		c.Refuse(ctx, login, verifier.ReasonPlainText)
		return SignIn{Result: PrivacyRequired}
	}
	if len(login) > MaxCredential || len(secret) > MaxCredential {
		c.Refuse(ctx, login, verifier.ReasonTooLong)
		return SignIn{Result: Denied}
	}
	a := verifier.Attempt{Protocol: c.r.cfg.Protocol, User: AccountName(c.r.cfg.LoginFormat, login), Secret: secret, Remote: c.remote, TLS: c.tls}
	chk := &checker{c: c, login: login}
	master := c.r.up.MasterUser != ""
	if !master {
		a.Password = chk
	}
	d := c.r.v.Verify(ctx, a)
	if !d.Allowed() {
		chk.drop()
		switch {
		case d.Unavailable():
			return SignIn{Result: Unavailable}
		case d.Busy():
			return SignIn{Result: Busy}
		}
		return SignIn{Result: Denied, Message: d.Message}
	}
	up := chk.up
	if up == nil {
		// Master-user mode (or a verifier that did not need the
		// upstream): log in on the user's behalf now.
		var err error
		if up, err = c.r.up.open(ctx, c.r.proto, c.client); err == nil {
			if master {
				err = up.login(c.r.up, c.r.up.MasterUser, c.r.up.MasterPassword, d.User)
			} else {
				err = up.login(c.r.up, login, secret, "")
			}
			if err != nil {
				up.Close()
			}
		}
		if err != nil {
			c.r.log.Warn("upstream login failed after a good sign-in", "user", d.User, "err", err)
			return SignIn{Result: Unavailable}
		}
	}
	c.mu.Lock()
	c.up = up
	c.mu.Unlock()
	c.signedIn = d
	return SignIn{Result: SignedIn, Upstream: up.Login}
}

// checker is the verifier's password check for one sign-in: the login on
// this client's own upstream connection.
type checker struct {
	c  *Conn
	up *UpConn
	// login is the name exactly as the client gave it: the mail server
	// maps it to a mailbox its own way, which the login format mirrors.
	login string
}

// CheckPassword logs in to the mail server with the client's login name
// and password; the account name the verifier passes is stepgate's.
func (k *checker) CheckPassword(ctx context.Context, _, password string) error {
	k.drop()
	up, err := k.c.r.up.open(ctx, k.c.r.proto, k.c.client)
	if err == nil {
		if err = up.login(k.c.r.up, k.login, password, ""); err != nil {
			up.Close()
		}
	}
	if errors.Is(err, verifier.ErrUnavailable) {
		// The verifier reports only "unavailable"; the operator needs why.
		k.c.r.log.Warn("mail server unavailable", "upstream", k.c.r.up.Addr, "err", err)
	}
	if err != nil {
		return err
	}
	k.up = up
	return nil
}

func (k *checker) drop() {
	if k.up != nil {
		k.up.Close()
		k.up = nil
	}
}
