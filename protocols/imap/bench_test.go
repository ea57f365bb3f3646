package imap

import (
	"fmt"
	"io"
	"sync"
	"testing"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/stepgate/stepgate/internal/testenv/dovecot"
)

// benchTargets are the two ways to reach the same mailbox: straight to
// Dovecot (the reference) and through stepgate.
func benchTargets(b *testing.B, r *rig, stored string) []struct{ name, addr, secret string } {
	return []struct{ name, addr, secret string }{
		{"direct", r.dc.Addr(), "classmate"},
		{"stepgate", r.Addr, stored},
	}
}

// BenchmarkLogin is connect, log in, log out: what a mail client that
// reconnects every few minutes does, with its stored string (a session
// hit in stepgate, then the login upstream).
func BenchmarkLogin(b *testing.B) {
	r := newRig(b, map[string]string{"alice": "classmate"})
	alice := r.AddEnrolled(b, "alice", "x")
	stored := "classmate" + alice.Code(b)
	for _, tg := range benchTargets(b, r, stored) {
		for _, conns := range []int{1, 8} {
			b.Run(fmt.Sprintf("%s/conns=%d", tg.name, conns), func(b *testing.B) {
				var wg sync.WaitGroup
				work := make(chan struct{}, b.N)
				for i := 0; i < b.N; i++ {
					work <- struct{}{}
				}
				close(work)
				errs := make(chan error, conns)
				b.ResetTimer()
				for w := 0; w < conns; w++ {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for range work {
							c, err := imapclient.DialInsecure(tg.addr, nil)
							if err == nil {
								err = c.Login("alice", tg.secret).Wait()
								c.Logout().Wait()
								c.Close()
							}
							if err != nil {
								errs <- err
								return
							}
						}
					}()
				}
				wg.Wait()
				b.StopTimer()
				close(errs)
				if err := <-errs; err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "logins/s")
			})
		}
	}
}

// BenchmarkFetch reads a whole mailbox of 1 KiB to 1 MiB messages.
func BenchmarkFetch(b *testing.B) {
	r := newRig(b, map[string]string{"alice": "classmate"})
	alice := r.AddEnrolled(b, "alice", "x")
	stored := "classmate" + alice.Code(b)
	sizes := []int{1 << 10, 10 << 10, 100 << 10, 1 << 20}
	total := 0
	for i := 0; i < 100; i++ {
		m := dovecot.Message(i, sizes[i%len(sizes)])
		total += len(m)
		r.dc.Deliver("alice", m)
	}
	for _, tg := range benchTargets(b, r, stored) {
		b.Run(tg.name, func(b *testing.B) {
			c, err := imapclient.DialInsecure(tg.addr, nil)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			if err := c.Login("alice", tg.secret).Wait(); err != nil {
				b.Fatal(err)
			}
			if _, err := c.Select("INBOX", &goimap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
				b.Fatal(err)
			}
			var all goimap.SeqSet
			all.AddRange(1, 100)
			b.SetBytes(int64(total))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
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
					b.Fatal(err)
				}
				if got != total {
					b.Fatalf("fetched %d bytes, want %d", got, total)
				}
			}
		})
	}
}
