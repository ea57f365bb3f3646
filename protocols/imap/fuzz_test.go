package imap

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/stepgate/stepgate/internal/listener"
	"github.com/stepgate/stepgate/internal/testenv"
)

// FuzzPreLogin feeds bytes to the pre-login dialogue of one connection:
// it must answer or hang up, never panic or hang.
func FuzzPreLogin(f *testing.F) {
	for _, s := range []string{
		"a1 CAPABILITY\r\na2 LOGOUT\r\n",
		"a1 LOGIN alice classmate123456\r\n",
		"a1 LOGIN {5}\r\nalice {15+}\r\nclassmate123456\r\n",
		"a1 AUTHENTICATE PLAIN AGFsaWNlAGNsYXNzbWF0ZTEyMzQ1Ng==\r\n",
		"a1 AUTHENTICATE PLAIN\r\n*\r\n",
		"a1 ID (\"name\" \"x\" \"version\" NIL)\r\n",
		"a1 LOGIN \"al\\\"ice\" \"pw\"\r\n",
		"a1 LOGIN {99999999}\r\n",
	} {
		f.Add([]byte(s))
	}
	r := newRigFor(f, nil, Upstream{Addr: "127.0.0.1:1", Timeout: 100 * time.Millisecond}, nil, func(c *Config) {
		c.PreLoginTimeout = 200 * time.Millisecond
	})
	r.AddEnrolled(f, "alice", "classmate")
	feed := testenv.NewFeeder(f)
	f.Fuzz(func(t *testing.T, in []byte) {
		feed.Feed(t, in, func(server net.Conn) {
			serve(r.srv)(context.Background(), listener.Conn{Raw: server, Net: server})
		})
	})
}
