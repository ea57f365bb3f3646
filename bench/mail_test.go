package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	gosmtp "github.com/emersion/go-smtp"

	"github.com/stepgate/stepgate/internal/config"
	"github.com/stepgate/stepgate/internal/loadgen"
	"github.com/stepgate/stepgate/internal/server"
	"github.com/stepgate/stepgate/internal/testenv"
	"github.com/stepgate/stepgate/internal/testenv/dovecot"
	"github.com/stepgate/stepgate/internal/testenv/postfix"
	"github.com/stepgate/stepgate/internal/verifier"
	"github.com/stepgate/stepgate/internal/verifier/verifiertest"
	"github.com/stepgate/stepgate/protocols/pop3"
	"github.com/stepgate/stepgate/protocols/smtp"
)

// mailBench is stepgate's POP3 and submission front ends in front of a
// real Dovecot POP3 and a real Postfix, and the same servers reached
// directly.
type mailBench struct {
	p                  profile
	dc                 *dovecot.Server
	pf                 *postfix.Server
	pop3Addr, smtpAddr string
	stored             string
	total              int // bytes in the POP3 mailbox
}

func newMailBench(t *testing.T, p profile) *mailBench {
	t.Helper()
	dc := dovecot.Start(t, dovecot.Options{Users: map[string]string{"alice": "classmate", "bob": "bobsecret"}, POP3: true, AuthSocket: true})
	var pf *postfix.Server
	if os.Getuid() == 0 {
		pf = postfix.Start(t, postfix.Options{AuthSocket: dc.AuthSocket(), Users: []string{"bob"}})
	} else {
		// Postfix's master runs only as root; the rest of the harness
		// still runs.
		skippedParts = append(skippedParts, "SMTP submission: Postfix's master runs only as root")
	}
	env := verifiertest.New(t, verifiertest.Options{Configure: func(c *verifier.Config) {
		c.Audit = slog.New(slog.NewTextHandler(io.Discard, nil))
	}})
	alice := env.AddEnrolled(t, "alice", "x")
	pc := config.Default().POP3
	pc.Listen = "127.0.0.1:0"
	ps, err := pop3.New(pop3.Options{Config: server.POP3Config(pc), Upstream: pop3.Upstream{Addr: dc.POP3Addr()}, Verifier: env.Verifier})
	if err != nil {
		t.Fatal(err)
	}
	testenv.Serve(t, ps)
	b := &mailBench{p: p, dc: dc, pf: pf, pop3Addr: ps.Addr(), stored: "classmate" + alice.Code(t)}
	if pf != nil {
		sc := config.Default().Submission
		sc.Listen = "127.0.0.1:0"
		ss, err := smtp.New(smtp.Options{Config: server.SubmissionConfig(sc), Upstream: smtp.Upstream{Addr: pf.Addr()}, Verifier: env.Verifier})
		if err != nil {
			t.Fatal(err)
		}
		testenv.Serve(t, ss)
		b.smtpAddr = ss.Addr()
	}
	// Messages from 1 KiB to 1 MiB, spread evenly on a log scale, as in
	// the IMAP mailbox.
	for i := 0; i < p.messages; i++ {
		size := int(1024 * math.Pow(1024, float64(i)/float64(max(1, p.messages-1))))
		m := dovecot.Message(i, size)
		b.total += len(m)
		dc.Deliver("alice", m)
	}
	return b
}

// submit is one connection that signs in once, then sends 10 KiB
// messages to bob, one per operation.
func (b *mailBench) submit(addr, secret string) func(int) (loadgen.Worker, error) {
	msg := dovecot.Message(1, 10<<10)
	return func(int) (loadgen.Worker, error) {
		c, err := gosmtp.Dial(addr)
		if err != nil {
			return loadgen.Worker{}, err
		}
		if err := c.Hello("bench.example.org"); err != nil {
			c.Close()
			return loadgen.Worker{}, err
		}
		if err := c.Auth(sasl.NewPlainClient("", "alice", secret)); err != nil {
			c.Close()
			return loadgen.Worker{}, err
		}
		return loadgen.Worker{
			Op: func(int) error {
				return c.SendMail("alice@example.org", []string{"bob@example.org"}, bytes.NewReader(msg))
			},
			Close: func() { c.Quit(); c.Close() },
		}, nil
	}
}

func (b *mailBench) measurements() []measurement {
	if b.pf == nil {
		return nil
	}
	run := func(conns int, w func(int) (loadgen.Worker, error)) (loadgen.Result, error) {
		return loadgen.Run(context.Background(), loadgen.Options{Conns: conns, Duration: b.p.duration}, w)
	}
	return []measurement{{
		id: "smtp-submit", title: "SMTP: 10 KiB messages submitted on signed-in connections", unit: "messages/s",
		stepgate: side{name: "via stepgate", run: func(t *testing.T, conns, rep int) (loadgen.Result, error) {
			return run(conns, b.submit(b.smtpAddr, b.stored))
		}},
		ref: side{name: "Postfix direct", run: func(t *testing.T, conns, rep int) (loadgen.Result, error) {
			return run(conns, b.submit(b.pf.Addr(), "classmate"))
		}},
	}}
}

// retrOnce reads every message of the mailbox with RETR and returns MB/s.
func (b *mailBench) retrOnce(addr, secret string) (float64, error) {
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		return 0, err
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(5 * time.Minute))
	br := bufio.NewReaderSize(nc, 64<<10)
	status := func() error {
		l, err := br.ReadString('\n')
		if err == nil && !strings.HasPrefix(l, "+OK") {
			err = fmt.Errorf("POP3: %q", strings.TrimSpace(l))
		}
		return err
	}
	cmd := func(s string) error {
		if _, err := nc.Write([]byte(s + "\r\n")); err != nil {
			return err
		}
		return status()
	}
	if err := status(); err != nil {
		return 0, err
	}
	if err := cmd("USER alice"); err != nil {
		return 0, err
	}
	if err := cmd("PASS " + secret); err != nil {
		return 0, err
	}
	start := time.Now()
	got := 0
	for i := 1; i <= b.p.messages; i++ {
		if err := cmd("RETR " + strconv.Itoa(i)); err != nil {
			return 0, err
		}
		for {
			l, err := br.ReadSlice('\n')
			if errors.Is(err, bufio.ErrBufferFull) {
				got += len(l)
				continue
			}
			if err != nil {
				return 0, err
			}
			if string(l) == ".\r\n" {
				break
			}
			got += len(l)
		}
	}
	el := time.Since(start)
	cmd("QUIT")
	if got < b.total {
		return 0, fmt.Errorf("retrieved %d bytes, want at least %d", got, b.total)
	}
	return float64(got) / 1e6 / el.Seconds(), nil
}

func (b *mailBench) retr(t *testing.T, p profile) []string {
	var sg, dv []float64
	for rep := 0; rep < max(3, p.reps); rep++ {
		for _, x := range []struct {
			addr, secret string
			out          *[]float64
		}{{b.pop3Addr, b.stored, &sg}, {b.dc.POP3Addr(), "classmate", &dv}} {
			v, err := b.retrOnce(x.addr, x.secret)
			if err != nil {
				t.Errorf("RETR: %v", err)
				continue
			}
			*x.out = append(*x.out, v)
		}
	}
	ratio := 0.0
	if median(dv) > 0 {
		ratio = median(sg) / median(dv)
	}
	return []string{fmt.Sprintf("POP3 RETR of a %d-message mailbox (1 KiB to 1 MiB, %.0f MB): via stepgate %.0f MB/s, Dovecot direct %.0f MB/s, ratio %.2f (medians of %d)",
		p.messages, float64(b.total)/1e6, median(sg), median(dv), ratio, len(sg))}
}
