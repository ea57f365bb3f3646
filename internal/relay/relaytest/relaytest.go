// Package relaytest is the rig for tests of the mail front ends built on
// internal/relay: a front end over a real verifier, serving on loopback
// until the test ends, with raw line clients (near and from afar), curl,
// and the audit log decoded. The mail server behind it is the test's own
// (Dovecot for IMAP and POP3, Postfix for SMTP), so that each protocol
// test sets up only what is its own.
package relaytest

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stepgate/stepgate/internal/listener"
	"github.com/stepgate/stepgate/internal/testenv"
	"github.com/stepgate/stepgate/internal/verifier"
	"github.com/stepgate/stepgate/internal/verifier/verifiertest"
)

// FrontEnd is a front end under test.
type FrontEnd interface {
	Listen() error
	Serve(ctx context.Context) error
	Addr() string
}

// Rig is a front end over a real verifier.
type Rig struct {
	*verifiertest.Env
	// Logs holds the front end's log, debug level and up.
	Logs *testenv.Buffer
	// Addr is the front end's plain listener.
	Addr string
}

// Start builds a verifier with opts (its clock is set here, to now) and a
// logger into Rig.Logs, hands both to build, and serves the front end it
// returns until the test ends; Serve must then return nil.
func Start(t testing.TB, opts verifiertest.Options, build func(v *verifier.Verifier, log *slog.Logger) (FrontEnd, error)) *Rig {
	t.Helper()
	opts.Clock = verifiertest.NewClock(time.Now())
	e := verifiertest.New(t, opts)
	logs := &testenv.Buffer{}
	fe, err := build(e.Verifier, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	testenv.Serve(t, fe)
	return &Rig{Env: e, Logs: logs, Addr: fe.Addr()}
}

// Client is a raw line client of a front end: each test writes the
// protocol's bytes itself and reads the answers a line at a time.
type Client struct {
	t  testing.TB
	nc net.Conn
	br *bufio.Reader
}

func newClient(t testing.TB, nc net.Conn) *Client {
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(15 * time.Second))
	return &Client{t: t, nc: nc, br: bufio.NewReader(nc)}
}

// Dial connects to the front end; the greeting is the first Line.
func (r *Rig) Dial(t testing.TB) *Client {
	t.Helper()
	nc, err := net.Dial("tcp", r.Addr)
	if err != nil {
		t.Fatal(err)
	}
	return newClient(t, nc)
}

// FromAfar runs serve on one end of an in-memory connection and returns
// a client on the other: its address ("pipe") is neither loopback nor
// TLS, as a client across the network without TLS would be.
func FromAfar(t testing.TB, serve func(context.Context, listener.Conn)) *Client {
	t.Helper()
	client, server := net.Pipe()
	go serve(context.Background(), listener.Conn{Raw: server, Net: server})
	return newClient(t, client)
}

// Send writes s and CRLF. (On a connection from afar it returns once the
// front end has read it: an in-memory connection has no buffer.)
func (c *Client) Send(s string) { c.nc.Write([]byte(s + "\r\n")) }

// Line reads one line, without its CRLF; the test fails if none comes.
func (c *Client) Line() string {
	c.t.Helper()
	l, err := c.br.ReadString('\n')
	if err != nil {
		c.t.Fatalf("reading: %v", err)
	}
	return strings.TrimRight(l, "\r\n")
}

// Curl runs curl with user:secret on url (imap://, pop3://, smtp://) and
// returns its exit code and output.
func Curl(t testing.TB, user, secret, url string, extra ...string) (int, string) {
	t.Helper()
	path := testenv.NeedProgram(t, "curl")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	args := append([]string{"-sS", "--max-time", "20", "-u", user + ":" + secret}, extra...)
	cmd := exec.CommandContext(ctx, path, append(args, url)...)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, string(out)
	case errors.As(err, &ee):
		return ee.ExitCode(), string(out)
	}
	t.Fatal(err)
	return -1, ""
}

// WrongCode is code with its first digit changed.
func WrongCode(code string) string { return WrongCodeN(code, 1) }

// WrongCodeN is the n-th of nine wrong codes next to code: distinct
// guesses, since a string that failed already counts once.
func WrongCodeN(code string, n int) string {
	b := []byte(code)
	b[0] = '0' + (b[0]-'0'+byte(n))%10
	return string(b)
}

// Events decodes the audit log.
func (r *Rig) Events(t testing.TB) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(r.AuditLog()), "\n") {
		if l == "" {
			continue
		}
		m := map[string]any{}
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("audit line %q: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

// WantOneRefusal checks that the audit log holds exactly one event more
// than the before it held, a deny by protocol for user with reason.
func (r *Rig) WantOneRefusal(t testing.TB, before int, protocol, reason, user string) {
	t.Helper()
	evs := r.Events(t)
	if len(evs) != before+1 {
		t.Fatalf("%d audit events for one refusal, want 1:\n%s", len(evs)-before, r.AuditLog())
	}
	ev := evs[before]
	if ev["msg"] != "decision" || ev["protocol"] != protocol || ev["result"] != "deny" || ev["reason"] != reason || ev["user"] != user {
		t.Errorf("audit event %v, want a deny for %q with reason %s", ev, user, reason)
	}
}
