package imap

import (
	"bufio"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stepgate/stepgate/internal/relay/relaytest"
	"github.com/stepgate/stepgate/internal/session"
	"github.com/stepgate/stepgate/internal/testenv"
	"github.com/stepgate/stepgate/internal/testenv/dovecot"
	"github.com/stepgate/stepgate/internal/verifier/verifiertest"
)

// TestFailurePathsTakeTheSameTime: through the IMAP front end in front of
// a real Dovecot, the median LOGIN time of an unknown user, a wrong
// password (with the right code: the only path that reaches Dovecot), a
// wrong code and a password alone are within a factor of 1.5 of each
// other. Statistical: interleaved tries, medians only. Dovecot answers a
// failed login on a half-second tick whatever auth_failure_delay says, so
// every try costs half a second: 40 per path, the paths side by side, are
// enough for medians of values that cluster that tightly.
func TestFailurePathsTakeTheSameTime(t *testing.T) {
	if testing.Short() {
		t.Skip("statistical timing test; skipped with -short")
	}
	dc := dovecot.Start(t, dovecot.Options{Users: map[string]string{"alice": "classmate"}, NoFailureDelay: true})
	r := newRigWith(t, dc, Upstream{Addr: dc.Addr(), TLS: "none"}, nil, nil, verifiertest.Options{
		SessionConfig: func(c *session.Config) {
			c.Limits = session.Limits{MaxFailures: 100000, Window: time.Minute, Lockout: time.Minute, MaxLockout: time.Minute}
		},
	})
	alice := r.AddEnrolled(t, "alice", "unused-upstream-checks")
	paths := []struct {
		name string
		user string
		pw   func() string
	}{
		{"unknown user", "nobody", func() string { return "classmate" + alice.Code(t) }},
		{"wrong password", "alice", func() string { return "classmatf" + alice.Code(t) }},
		{"wrong code", "alice", func() string { return "classmate" + relaytest.WrongCode(alice.Code(t)) }},
		{"password only", "alice", func() string { return "classmate" }},
	}
	tries := 40
	try := func(i int) time.Duration {
		c, err := net.Dial("tcp", r.Addr)
		if err != nil {
			t.Error(err)
			return 0
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(20 * time.Second))
		br := bufio.NewReader(c)
		if _, err := br.ReadString('\n'); err != nil { // greeting
			t.Error(err)
			return 0
		}
		cmd := "a LOGIN " + paths[i].user + " " + paths[i].pw() + "\r\n"
		start := time.Now()
		if _, err := c.Write([]byte(cmd)); err != nil {
			t.Error(err)
			return 0
		}
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				t.Errorf("%s: %v", paths[i].name, err)
				return 0
			}
			if strings.HasPrefix(line, "a ") {
				took := time.Since(start)
				if !strings.HasPrefix(line, "a NO [AUTHENTICATIONFAILED]") {
					t.Errorf("%s: %q, want a generic failure", paths[i].name, line)
				}
				return took
			}
		}
	}
	warmup := 8
	if v := os.Getenv("STEPGATE_TIMING_TRIES"); v != "" {
		tries, _ = strconv.Atoi(v)
		warmup = 4
	}
	for i := 0; i < warmup; i++ { // warm up: the pacer learns what a login costs here
		try(i % len(paths))
	}
	// The paths run side by side, one connection each, so that the test
	// costs 40 ticks rather than 160.
	times := make([][]time.Duration, len(paths))
	var wg sync.WaitGroup
	for i := range paths {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; n < tries; n++ {
				times[i] = append(times[i], try(i))
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	names := make([]string, len(paths))
	for i := range paths {
		names[i] = paths[i].name
	}
	testenv.SameMedians(t, names, times, 1.5)
}
