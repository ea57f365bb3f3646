package bench

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stepgate/stepgate/internal/session"
)

// settle collects garbage and hands freed memory back to the system, so
// that RSS readings before and after compare like with like.
func settle() {
	runtime.GC()
	debug.FreeOSMemory()
}

// rss is this process's resident set size in bytes.
func rss() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, _ := strconv.ParseInt(f[1], 10, 64)
	return pages * int64(os.Getpagesize())
}

func heap() uint64 {
	settle()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

func raiseFileLimit(t *testing.T) {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return
	}
	l.Cur = l.Max
	syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
}

// sessionHeapTarget is the heap a live session may cost (issue 16: 1 KiB
// at 100,000 sessions).
const sessionHeapTarget = 1024

// memory measures heap and RSS per live session, and RSS per idle
// connection to the LDAP front end.
func memory(t *testing.T, p profile) []string {
	var out []string
	s, err := session.New(session.Config{HashKey: bytes.Repeat([]byte{7}, 32)})
	if err != nil {
		t.Fatal(err)
	}
	h0, r0 := heap(), rss()
	for i := 0; i < p.sessions; i++ {
		u := fmt.Sprintf("user%06d", i)
		if _, err := s.Create(session.NewSession{User: u, Key: s.KeyFor(u, "classmate557831"), Protocol: "imap", Remote: "192.0.2.44"}); err != nil {
			t.Fatal(err)
		}
	}
	h1, r1 := heap(), rss()
	runtime.KeepAlive(s)
	s = nil
	// The instance's cache alone: a stored session's row is on disk (in
	// the database's own page cache), and memory holds the same Session
	// whether or not a store is configured.
	perSession := float64(h1-h0) / float64(p.sessions)
	out = append(out, fmt.Sprintf("Memory per live session (%d sessions, the instance's memdb cache; stored rows are on disk): heap %.0f B, RSS %.0f B (target <= %d B: %s)",
		p.sessions, perSession, float64(r1-r0)/float64(p.sessions), sessionHeapTarget, met(perSession <= sessionHeapTarget)))

	var l syscall.Rlimit
	syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l)
	n := p.idle
	if need := uint64(2*n + 256); l.Cur < need {
		n = int(l.Cur-256) / 2
		skippedParts = append(skippedParts, fmt.Sprintf("idle connections: the open-file limit (%d) allows %d, not %d", l.Cur, n, p.idle))
	}
	sg := startStepgate(t, nil, nil, nil, nil, nil)
	settle()
	base := rss()
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := 0; i < n; i++ {
		c, err := net.Dial("tcp", sg.addr)
		if err != nil {
			skippedParts = append(skippedParts, fmt.Sprintf("idle connections: stopped at %d: %v", i, err))
			break
		}
		conns = append(conns, c)
	}
	deadline := time.Now().Add(30 * time.Second)
	for sg.srv.Conns() < len(conns) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	settle()
	after := rss()
	if len(conns) > 0 {
		perConn := float64(after-base) / float64(len(conns))
		out = append(out, fmt.Sprintf("RSS with %d idle LDAP connections: +%.1f MiB (%.1f KiB per connection, client sockets in the same process included; target 10,000 under 200 MiB: %s)",
			len(conns), float64(after-base)/(1<<20), perConn/1024, met(perConn*10000 < 200<<20)))
	}
	return out
}
