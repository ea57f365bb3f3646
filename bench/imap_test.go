package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/stepgate/stepgate/internal/config"
	"github.com/stepgate/stepgate/internal/loadgen"
	"github.com/stepgate/stepgate/internal/server"
	"github.com/stepgate/stepgate/internal/testenv/dovecot"
	"github.com/stepgate/stepgate/internal/verifier"
	"github.com/stepgate/stepgate/internal/verifier/verifiertest"
	"github.com/stepgate/stepgate/protocols/imap"
)

// imapBench is stepgate's IMAP front end in front of a real Dovecot, and
// the same Dovecot reached directly.
type imapBench struct {
	p      profile
	dc     *dovecot.Server
	addr   string
	stored string
	total  int // bytes in the mailbox
	// nginx is nginx's mail proxy in front of the same Dovecot, or nil.
	nginx *nginxIMAP
}

func newIMAPBench(t *testing.T, p profile) *imapBench {
	t.Helper()
	dc := dovecot.Start(t, dovecot.Options{Users: map[string]string{"alice": "classmate"}})
	env := verifiertest.New(t, verifiertest.Options{Configure: func(c *verifier.Config) {
		c.Audit = slog.New(slog.NewTextHandler(io.Discard, nil))
	}})
	alice := env.AddEnrolled(t, "alice", "x")
	cfg := config.Default().IMAP
	cfg.Listen = "127.0.0.1:0"
	srv, err := imap.New(imap.Options{Config: server.IMAPConfig(cfg), Upstream: imap.Upstream{Addr: dc.Addr(), TLS: "none"}, Verifier: env.Verifier})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { srv.Serve(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	b := &imapBench{p: p, dc: dc, addr: srv.Addr(), stored: "classmate" + alice.Code(t), nginx: startNginxIMAP(t, dc.Addr())}
	// Messages from 1 KiB to 1 MiB, spread evenly on a log scale.
	for i := 0; i < p.messages; i++ {
		size := int(1024 * math.Pow(1024, float64(i)/float64(max(1, p.messages-1))))
		m := dovecot.Message(i, size)
		b.total += len(m)
		dc.Deliver("alice", m)
	}
	return b
}

func (b *imapBench) login(addr, secret string) func(int) (loadgen.Worker, error) {
	return func(int) (loadgen.Worker, error) {
		return loadgen.Worker{Op: func(int) error {
			c, err := imapclient.DialInsecure(addr, nil)
			if err != nil {
				return err
			}
			defer c.Close()
			if err := c.Login("alice", secret).Wait(); err != nil {
				return err
			}
			return c.Logout().Wait()
		}}, nil
	}
}

func (b *imapBench) measurements() []measurement {
	run := func(conns int, w func(int) (loadgen.Worker, error)) (loadgen.Result, error) {
		return loadgen.Run(context.Background(), loadgen.Options{Conns: conns, Duration: b.p.duration}, w)
	}
	m := measurement{
		id: "imap-login", title: "IMAP: connect, log in, log out (stored string)", unit: "logins/s",
		stepgate: side{name: "via stepgate", run: func(t *testing.T, conns, rep int) (loadgen.Result, error) {
			return run(conns, b.login(b.addr, b.stored))
		}},
		ref: side{name: "Dovecot direct", run: func(t *testing.T, conns, rep int) (loadgen.Result, error) {
			return run(conns, b.login(b.dc.Addr(), "classmate"))
		}},
	}
	if b.nginx != nil {
		m.also, m.alsoTarget = &side{name: "nginx mail proxy", run: func(t *testing.T, conns, rep int) (loadgen.Result, error) {
			return run(conns, b.login(b.nginx.addr, "classmate"))
		}}, 1.0
	}
	return []measurement{m}
}

// fetchOnce reads every message body of the mailbox and returns MB/s.
func (b *imapBench) fetchOnce(addr, secret string) (float64, error) {
	c, err := imapclient.DialInsecure(addr, nil)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	if err := c.Login("alice", secret).Wait(); err != nil {
		return 0, err
	}
	if _, err := c.Select("INBOX", &goimap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
		return 0, err
	}
	var all goimap.SeqSet
	all.AddRange(1, uint32(b.p.messages))
	start := time.Now()
	cmd := c.Fetch(all, &goimap.FetchOptions{BodySection: []*goimap.FetchItemBodySection{{Peek: true}}})
	got := 0
	for msg := cmd.Next(); msg != nil; msg = cmd.Next() {
		for item := msg.Next(); item != nil; item = msg.Next() {
			if body, ok := item.(imapclient.FetchItemDataBodySection); ok {
				n, _ := io.Copy(io.Discard, body.Literal)
				got += int(n)
			}
		}
	}
	if err := cmd.Close(); err != nil {
		return 0, err
	}
	if got != b.total {
		return 0, fmt.Errorf("fetched %d bytes, want %d", got, b.total)
	}
	return float64(got) / 1e6 / time.Since(start).Seconds(), nil
}

func (b *imapBench) fetch(t *testing.T, p profile) []string {
	type way struct {
		name, addr, secret string
		out                []float64
	}
	ways := []*way{{name: "via stepgate", addr: b.addr, secret: b.stored}, {name: "Dovecot direct", addr: b.dc.Addr(), secret: "classmate"}}
	if b.nginx != nil {
		ways = append(ways, &way{name: "via nginx", addr: b.nginx.addr, secret: "classmate"})
	}
	for rep := 0; rep < max(3, p.reps); rep++ {
		for _, x := range ways {
			v, err := fetchInChild(x.addr, x.secret, b.p.messages, b.total)
			if err != nil {
				t.Errorf("FETCH %s: %v", x.name, err)
				continue
			}
			x.out = append(x.out, v)
		}
	}
	sg, dv := median(ways[0].out), median(ways[1].out)
	ratio := 0.0
	if dv > 0 {
		ratio = sg / dv
	}
	line := fmt.Sprintf("IMAP FETCH of a %d-message mailbox (1 KiB to 1 MiB, %.0f MB): via stepgate %.0f MB/s, Dovecot direct %.0f MB/s, ratio %.2f (medians of %d; target >= 0.9x: %s)",
		p.messages, float64(b.total)/1e6, sg, dv, ratio, len(ways[0].out), met(ratio >= 0.9))
	if len(ways) > 2 {
		ng := median(ways[2].out)
		r := 0.0
		if ng > 0 {
			r = sg / ng
		}
		line += fmt.Sprintf("; via nginx mail proxy %.0f MB/s, stepgate/nginx %.2f (target >= 1.0x: %s)", ng, r, met(r >= 1.0))
	}
	return []string{line}
}

// fetchInChild runs fetchOnce in a child process (this test binary
// again, TestFetchClient): a client in this process would share its
// GOMAXPROCS with stepgate's splice, so every wake-up of the relay could
// wait behind the client's own parsing, which nginx and Dovecot, in
// processes of their own, never do. The client then costs all three
// ways the same.
func fetchInChild(addr, secret string, messages, total int) (float64, error) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestFetchClient$", "-test.count=1")
	cmd.Env = append(os.Environ(), "STEPGATE_FETCH_CLIENT="+addr, "STEPGATE_FETCH_SECRET="+secret,
		fmt.Sprintf("STEPGATE_FETCH_MESSAGES=%d", messages), fmt.Sprintf("STEPGATE_FETCH_TOTAL=%d", total))
	out, err := cmd.CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("fetch client: %v\n%s", err, out)
	}
	for _, l := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(l, "FETCH MB/s "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	return 0, fmt.Errorf("fetch client said no rate:\n%s", out)
}

// TestFetchClient is the child of fetchInChild; it does nothing when run
// on its own.
func TestFetchClient(t *testing.T) {
	addr := os.Getenv("STEPGATE_FETCH_CLIENT")
	if addr == "" {
		t.Skip("the child process of the IMAP FETCH measurement")
	}
	messages, _ := strconv.Atoi(os.Getenv("STEPGATE_FETCH_MESSAGES"))
	total, _ := strconv.Atoi(os.Getenv("STEPGATE_FETCH_TOTAL"))
	b := &imapBench{p: profile{messages: messages}, total: total}
	v, err := b.fetchOnce(addr, os.Getenv("STEPGATE_FETCH_SECRET"))
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("FETCH MB/s %f\n", v)
}

// idle measures how long a message delivered upstream takes to reach a
// client in IDLE through stepgate.
func (b *imapBench) idle(t *testing.T, p profile) []string {
	arrived := make(chan struct{}, 16)
	c, err := imapclient.DialInsecure(b.addr, &imapclient.Options{UnilateralDataHandler: &imapclient.UnilateralDataHandler{
		Mailbox: func(d *imapclient.UnilateralDataMailbox) {
			if d.NumMessages != nil {
				arrived <- struct{}{}
			}
		}}})
	if err != nil {
		t.Errorf("IDLE: %v", err)
		return nil
	}
	defer c.Close()
	if err := c.Login("alice", b.stored).Wait(); err != nil {
		t.Errorf("IDLE: %v", err)
		return nil
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Errorf("IDLE: %v", err)
		return nil
	}
	var lat []float64
	for i := 0; i < 5; i++ {
		idle, err := c.Idle()
		if err != nil {
			t.Errorf("IDLE: %v", err)
			return nil
		}
		time.Sleep(100 * time.Millisecond) // let IDLE settle upstream
		start := time.Now()
		b.dc.Deliver("alice", dovecot.Message(100000+i, 500))
		select {
		case <-arrived:
			lat = append(lat, float64(time.Since(start).Milliseconds()))
		case <-time.After(10 * time.Second):
			t.Errorf("IDLE: a delivered message did not arrive within 10 s")
		}
		idle.Close()
		idle.Wait()
	}
	m := median(lat)
	return []string{fmt.Sprintf("IMAP IDLE through stepgate: a message delivered upstream arrived after %.0f ms (median of %d; target within 1 s: %s)",
		m, len(lat), met(len(lat) > 0 && m <= 1000))}
}
