package imap

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/stepgate/stepgate/internal/relay/relaytest"
	"github.com/stepgate/stepgate/internal/testenv/dovecot"
	"github.com/stepgate/stepgate/internal/verifier"
	"github.com/stepgate/stepgate/internal/verifier/verifiertest"
)

// rig is stepgate's IMAP front end over a real verifier, in front of a
// real Dovecot.
type rig struct {
	*relaytest.Rig
	dc  *dovecot.Server
	srv *Server
}

func newRig(t testing.TB, users map[string]string) *rig {
	t.Helper()
	dc := dovecot.Start(t, dovecot.Options{Users: users})
	return newRigFor(t, dc, Upstream{Addr: dc.Addr(), TLS: "none"}, nil, nil)
}

func newRigFor(t testing.TB, dc *dovecot.Server, up Upstream, tlsCfg *tls.Config, mod func(*Config)) *rig {
	t.Helper()
	return newRigWith(t, dc, up, tlsCfg, mod, verifiertest.Options{})
}

// newRigWith is newRigFor with the verifier's and the session store's
// configuration changed by opts.
func newRigWith(t testing.TB, dc *dovecot.Server, up Upstream, tlsCfg *tls.Config, mod func(*Config), opts verifiertest.Options) *rig {
	t.Helper()
	// config.Default's values, on a free port.
	cfg := Config{Listen: "127.0.0.1:0", PreLoginTimeout: 60 * time.Second, MaxConns: 4096, LoginFormat: "%Ln"}
	if mod != nil {
		mod(&cfg)
	}
	r := &rig{dc: dc}
	r.Rig = relaytest.Start(t, opts, func(v *verifier.Verifier, log *slog.Logger) (relaytest.FrontEnd, error) {
		srv, err := New(Options{Config: cfg, Upstream: up, TLS: tlsCfg, Verifier: v, Log: log})
		r.srv = srv
		return srv, err
	})
	return r
}

func TestCurlListsAndFetches(t *testing.T) {
	r := newRig(t, map[string]string{"alice": "classmate", "bob": "bobsecret"})
	r.dc.Deliver("alice", dovecot.Message(1, 2000))
	alice := r.AddEnrolled(t, "alice", "unused-local-password")
	r.AddEnrolled(t, "bob", "unused-local-password")
	code := alice.Code(t)
	url := "imap://" + r.Addr + "/INBOX"

	for _, c := range []struct{ name, user, secret string }{
		{"wrong code", "alice", "classmate" + relaytest.WrongCode(code)},
		{"wrong password", "alice", "classmatf" + code},
		{"unknown user", "nobody", "classmate" + code},
		{"no code", "alice", "classmate"},
	} {
		if rc, out := relaytest.Curl(t, c.user, c.secret, url+"?ALL"); rc != 67 {
			t.Errorf("%s: curl exit %d, want 67: %s", c.name, rc, out)
		}
	}
	stored := "classmate" + code
	rc, out := relaytest.Curl(t, "alice", stored, url+"?ALL")
	if rc != 0 || !strings.Contains(out, "SEARCH 1") {
		t.Fatalf("search with password+code: exit %d: %s", rc, out)
	}
	if rc, out := relaytest.Curl(t, "bob", "bobsecret"+code, url+"?ALL"); rc != 67 {
		t.Errorf("alice's used code with bob's password: exit %d, want 67: %s", rc, out)
	}
	// Later connections with the stored string, after the code rolled
	// over, fetch the message (curl uses AUTHENTICATE PLAIN; the go-imap
	// client in the other tests uses LOGIN).
	r.Clock.Advance(10 * time.Minute)
	rc, out = relaytest.Curl(t, "alice", stored, url+";UID=1")
	if rc != 0 || !strings.Contains(out, "Subject: message 1") {
		t.Fatalf("fetch with the stored string: exit %d: %s", rc, out)
	}
	if !strings.Contains(r.dc.Log(), "rip=127.0.0.1") {
		t.Errorf("Dovecot did not log the client's address (ID x-originating-ip):\n%s", r.dc.Log())
	}
	if logs := r.Logs.String(); strings.Contains(logs, "classmate") || strings.Contains(logs, code) {
		t.Error("a password or code reached stepgate's log")
	}
}

func TestParallelLoginsOneSession(t *testing.T) {
	r := newRig(t, map[string]string{"alice": "classmate"})
	alice := r.AddEnrolled(t, "alice", "x")
	secret := "classmate" + alice.Code(t)
	var wg sync.WaitGroup
	errs := make(chan error, 5)
	for i := 0; i < 5; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := imapclient.DialInsecure(r.Addr, nil)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			if err := c.Login("alice", secret).Wait(); err != nil {
				errs <- err
				return
			}
			if _, err := c.Select("INBOX", nil).Wait(); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := r.Sessions.Live(); n != 1 {
		t.Errorf("%d sessions, want 1", n)
	}
}

func TestUpstreamDownIsUnavailable(t *testing.T) {
	r := newRig(t, map[string]string{"alice": "classmate"})
	alice := r.AddEnrolled(t, "alice", "x")
	stored := "classmate" + alice.Code(t)
	login := func() error {
		c, err := imapclient.DialInsecure(r.Addr, nil)
		if err != nil {
			return err
		}
		defer c.Close()
		return c.Login("alice", stored).Wait()
	}
	if err := login(); err != nil {
		t.Fatal(err)
	}
	r.dc.Stop()
	err := login()
	var ie *goimap.Error
	if !errors.As(err, &ie) || ie.Code != goimap.ResponseCodeUnavailable {
		t.Fatalf("login with Dovecot down: %v, want NO [UNAVAILABLE]", err)
	}
	if err := r.srv.Probe(context.Background()); err == nil {
		t.Error("Probe says the stopped mail server is up")
	}
	r.dc.Start()
	if err := login(); err != nil {
		t.Fatalf("login after Dovecot came back: %v", err)
	}
	if err := r.srv.Probe(context.Background()); err != nil {
		t.Errorf("Probe: %v", err)
	}
}

func TestIdleThroughAndRevokeCloses(t *testing.T) {
	r := newRig(t, map[string]string{"alice": "classmate"})
	alice := r.AddEnrolled(t, "alice", "x")
	arrived := make(chan uint32, 4)
	c, err := imapclient.DialInsecure(r.Addr, &imapclient.Options{
		UnilateralDataHandler: &imapclient.UnilateralDataHandler{Mailbox: func(d *imapclient.UnilateralDataMailbox) {
			if d.NumMessages != nil {
				arrived <- *d.NumMessages
			}
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login("alice", "classmate"+alice.Code(t)).Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	idle, err := c.Idle()
	if err != nil {
		t.Fatal(err)
	}
	r.dc.Deliver("alice", dovecot.Message(1, 500))
	select {
	case n := <-arrived:
		if n != 1 {
			t.Errorf("EXISTS %d, want 1", n)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("a message delivered upstream did not arrive through stepgate during IDLE")
	}
	if err := r.Store.BumpEpoch(context.Background(), "alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Verifier.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.Closed():
	case <-time.After(10 * time.Second):
		t.Fatal("revoking the session did not close the IDLE connection")
	}
	idle.Close()
}

// TestBadInputEndsOnlyItsConnection: each broken client ends on its own
// while a good one keeps signing in.
func TestBadInputEndsOnlyItsConnection(t *testing.T) {
	r := newRig(t, map[string]string{"alice": "classmate"})
	alice := r.AddEnrolled(t, "alice", "x")
	stored := "classmate" + alice.Code(t)
	good := func(when string) {
		t.Helper()
		c, err := imapclient.DialInsecure(r.Addr, nil)
		if err != nil {
			t.Fatalf("%s: %v", when, err)
		}
		defer c.Close()
		if err := c.Login("alice", stored).Wait(); err != nil {
			t.Fatalf("%s: a good client failed: %v", when, err)
		}
	}
	good("before")
	random := make([]byte, 64<<10)
	rand.Read(random)
	for _, c := range []struct {
		name string
		in   string
		want string
	}{
		{"8 MiB literal", "a1 LOGIN {8388608}\r\n", "* BYE"},
		{"8 MiB non-synchronising literal", "a1 LOGIN {8388608+}\r\n" + strings.Repeat("x", 4096), "* BYE"},
		{"line without end", strings.Repeat("a", 9000), "* BYE"},
		{"random bytes", string(random), "* BYE"},
		{"CRLF inside a quoted user name", "a1 LOGIN \"ali\r\nce\" \"pw\"\r\na2 LOGIN \"x\r\na3 LOGIN \"y\r\n", "BAD"},
	} {
		nc, err := net.Dial("tcp", r.Addr)
		if err != nil {
			t.Fatal(err)
		}
		go nc.Write([]byte(c.in))
		nc.SetReadDeadline(time.Now().Add(15 * time.Second))
		out, err := io.ReadAll(nc)
		nc.Close()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("%s: the connection was not ended", c.name)
		}
		if !strings.Contains(string(out), c.want) {
			t.Errorf("%s: got %q, want %q in it", c.name, truncate(string(out)), c.want)
		}
		good(c.name)
	}
}

func TestPreLoginDialogue(t *testing.T) {
	r := newRig(t, map[string]string{"alice": "classmate"})
	alice := r.AddEnrolled(t, "alice", "x")
	c := r.Dial(t)
	line, send := c.Line, c.Send
	if g := line(); !strings.HasPrefix(g, "* OK [CAPABILITY IMAP4rev1 SASL-IR LITERAL+ ID AUTH=PLAIN]") {
		t.Fatalf("greeting %q", g)
	}
	send(`a1 ID ("name" "test")`)
	if l := line(); !strings.HasPrefix(l, "* ID") {
		t.Fatalf("ID: %q", l)
	}
	if l := line(); l != "a1 OK ID completed" {
		t.Fatalf("ID: %q", l)
	}
	send("a2 SELECT INBOX")
	if l := line(); !strings.HasPrefix(l, "a2 BAD") {
		t.Fatalf("SELECT before login: %q", l)
	}
	// AUTHENTICATE PLAIN with an authorization identity of someone else.
	send("a3 AUTHENTICATE PLAIN " + b64("bob\x00alice\x00classmate"+alice.Code(t)))
	if l := line(); !strings.HasPrefix(l, "a3 NO [AUTHORIZATIONFAILED]") {
		t.Fatalf("authzid of another user: %q", l)
	}
	// LOGIN with a synchronising literal for the password, then the
	// upstream's capabilities under our tag.
	secret := "classmate" + alice.Code(t)
	send(fmt.Sprintf("a4 LOGIN alice {%d}", len(secret)))
	if l := line(); !strings.HasPrefix(l, "+") {
		t.Fatalf("literal continuation: %q", l)
	}
	send(secret)
	if l := line(); !strings.HasPrefix(l, "a4 OK [CAPABILITY IMAP4rev1") {
		t.Fatalf("LOGIN: %q", l)
	}
	// From here on it is Dovecot talking.
	send("a5 SELECT INBOX")
	for l := line(); !strings.HasPrefix(l, "a5 "); l = line() {
	}
}
