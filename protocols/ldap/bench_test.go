package ldap

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	goldap "github.com/go-ldap/ldap/v3"

	"github.com/stepgate/stepgate/internal/verifier/verifiertest"
)

var connCounts = []int{1, 8, 64}

// runConns spreads b.N binds over conns client connections, each on its
// own goroutine, and fails the benchmark when any bind fails.
func runConns(b *testing.B, addr string, conns int, bind func(c *goldap.Conn, i int) error) {
	b.Helper()
	cs := make([]*goldap.Conn, conns)
	for i := range cs {
		c, err := goldap.DialURL("ldap://" + addr)
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		cs[i] = c
	}
	var next, failed atomic.Int64
	var first atomic.Value
	var wg sync.WaitGroup
	b.ResetTimer()
	for _, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= b.N {
					return
				}
				if err := bind(c, i); err != nil {
					failed.Add(1)
					first.CompareAndSwap(nil, err)
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	if n := failed.Load(); n > 0 {
		b.Fatalf("%d of %d binds failed; first: %v", n, b.N, first.Load())
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "binds/s")
}

// BenchmarkBindSessionHit is the legacy client: a bind with the stored
// password+code string that opened a session earlier.
func BenchmarkBindSessionHit(b *testing.B) {
	for _, conns := range connCounts {
		b.Run(fmt.Sprintf("conns=%d", conns), func(b *testing.B) {
			r := newRig(b, nil, nil)
			u := r.AddEnrolled(b, "alice", "classmate")
			stored := "classmate" + u.Code(b)
			c, err := goldap.DialURL(r.url())
			if err != nil {
				b.Fatal(err)
			}
			if err := c.Bind("alice", stored); err != nil {
				b.Fatal(err)
			}
			c.Close()
			runConns(b, r.addr, conns, func(c *goldap.Conn, _ int) error {
				return c.Bind("uid=alice,ou=people,"+base, stored)
			})
		})
	}
}

// BenchmarkBindFirstSignIn is password plus a fresh code, one account per
// bind: a durable replay-guard write and a new session each time.
func BenchmarkBindFirstSignIn(b *testing.B) {
	for _, conns := range connCounts {
		b.Run(fmt.Sprintf("conns=%d", conns), func(b *testing.B) {
			r := newRig(b, nil, nil)
			users := make([]*verifiertest.User, b.N)
			codes := make([]string, b.N)
			for i := range users {
				users[i] = r.AddEnrolled(b, fmt.Sprintf("user%06d", i), "classmate")
				codes[i] = users[i].Code(b)
			}
			runConns(b, r.addr, conns, func(c *goldap.Conn, i int) error {
				return c.Bind(users[i].Name, "classmate"+codes[i])
			})
		})
	}
}
