// Package relay is the life cycle shared by the mail front ends (IMAP,
// POP3, SMTP submission), as nginx's mail proxy has one: a client
// connection speaks a protocol's pre-login dialogue under one deadline
// and bounded reads, may turn on STARTTLS, signs in through the verifier
// (the password checked by a login on the client's own upstream
// connection), and is then spliced to the mail server byte for byte until
// either side ends, the server shuts down or the session is revoked.
//
// A protocol brings only what is its own: a Dialogue (greeting, commands,
// answers) and an Opener that takes a fresh upstream connection to the
// point of login and logs in.
package relay

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/stepgate/stepgate/internal/listener"
	"github.com/stepgate/stepgate/internal/verifier"
)

// MaxFailures is how many failed sign-ins or bad commands a connection
// gets before the relay hangs up.
const MaxFailures = 3

// Protocol is what one mail protocol adds to the relay.
type Protocol interface {
	// Dialogue starts the pre-login dialogue of one client connection.
	Dialogue(c *Conn) Dialogue
	// Open takes a freshly dialled upstream connection to the point of
	// login (greeting, STARTTLS through u.StartTLS when starttls is set,
	// the client's address announced to the mail server) and returns
	// what logs in on it. client is nil on a connection no client asked
	// for (Dialer.Check): nothing is announced then.
	Open(ctx context.Context, u *UpConn, starttls bool, client net.Addr) (Login, error)
}

// Dialogue is a protocol's side of one client connection before login.
type Dialogue interface {
	// Greet writes the greeting, once any implicit TLS is up.
	Greet() error
	// Next reads and answers one client command. A read error it does
	// not answer itself (EOF, the pre-login deadline) is returned for
	// the relay to end the connection with the right log line and
	// Hangup.
	Next(ctx context.Context) (Outcome, error)
	// Hangup writes the protocol's last words before the relay closes
	// the connection.
	Hangup(why Hangup)
}

// Login is a protocol's login on one upstream connection.
type Login interface {
	// Login signs in as user with password; authz, when set, is the user
	// to act as (a master-user login). It returns nil,
	// verifier.ErrBadPassword for a refusal, or another error when the
	// mail server could not tell (the relay reports it unavailable).
	Login(user, password, authz string) error
}

// Outcome is what one command did to the dialogue.
type Outcome int

// Outcomes of Dialogue.Next.
const (
	// Continue: the command was answered; read the next.
	Continue Outcome = iota
	// Failed: a failed sign-in or a refused command; it counts towards
	// MaxFailures.
	Failed
	// BadCommand: a command that could not be parsed; it counts too.
	BadCommand
	// Close: the dialogue is over (logout, or the protocol hung up).
	Close
	// Splice: the client signed in (Conn.SignIn succeeded and the
	// protocol answered it); from here bytes are copied both ways.
	Splice
)

// Hangup says why the relay ends a connection.
type Hangup int

// Reasons for Dialogue.Hangup.
const (
	TooManyFailures Hangup = iota
	TooManyBadCommands
	Timeout
	Revoked
)

// Config is the protocol-independent part of a front end's settings.
type Config struct {
	// Protocol names the front end in attempts, audit events and logs.
	Protocol string
	// PreLoginTimeout bounds the whole dialogue before login.
	PreLoginTimeout time.Duration
	// AllowPlainRemote lets clients that are neither on TLS nor on this
	// machine send a password.
	AllowPlainRemote bool
	// LoginFormat maps a login name to an account (see AccountName).
	LoginFormat string
	// TLS, when set, turns on STARTTLS.
	TLS *tls.Config
	// TrustedNetworks are the peers that may name the real client
	// (Conn.Originating): webmail or a proxy in front.
	TrustedNetworks verifier.Networks
}

// Relay serves client connections of one protocol.
type Relay struct {
	cfg   Config
	proto Protocol
	v     *verifier.Verifier
	up    *Dialer
	log   *slog.Logger
}

// New builds a relay; log should already name the service.
func New(cfg Config, proto Protocol, v *verifier.Verifier, up *Dialer, log *slog.Logger) *Relay {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Relay{cfg: cfg, proto: proto, v: v, up: up, log: log}
}

// Serve runs one accepted connection to its end.
func (r *Relay) Serve(ctx context.Context, lc listener.Conn) {
	c := newConn(r, lc.Raw, lc.Net, lc.ImplicitTLS)
	defer c.closeAll()
	log := c.log
	// The whole pre-login dialogue has one deadline.
	c.raw.SetDeadline(time.Now().Add(r.cfg.PreLoginTimeout))
	if tc, ok := c.nc.(*tls.Conn); ok {
		if err := tc.HandshakeContext(ctx); err != nil {
			log.Info("connection closed: TLS handshake failed", "err", err)
			return
		}
	}
	d := r.proto.Dialogue(c)
	if d.Greet() != nil {
		return
	}
	failures := 0
	for {
		out, err := d.Next(ctx)
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded):
			log.Info("connection closed: no login within the pre-login timeout")
			d.Hangup(Timeout)
			return
		case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
			return
		case err != nil:
			log.Info("connection closed", "err", err)
			return
		}
		switch out {
		case Close:
			return
		case Splice:
			log.Info("signed in, splicing to the mail server", "user", c.signedIn.User)
			c.splice(ctx, d, log)
			return
		case Failed, BadCommand:
			failures++
			if failures < MaxFailures {
				continue
			}
			if out == BadCommand {
				log.Info("connection closed: too many bad commands")
				d.Hangup(TooManyBadCommands)
			} else {
				log.Info("connection closed: too many failures")
				d.Hangup(TooManyFailures)
			}
			return
		}
	}
}
