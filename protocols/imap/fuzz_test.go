package imap

import (
	"context"
	"io"
	"net"
	"testing"
	"time"

	"github.com/stepgate/stepgate/internal/listener"
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
	// A loopback TCP pair rather than net.Pipe: the client half-closes
	// after its bytes, so each input ends at once instead of at a timeout.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	defer ln.Close()
	f.Fuzz(func(t *testing.T, in []byte) {
		client, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		server, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			serve(r.srv)(context.Background(), listener.Conn{Raw: server, Net: server})
		}()
		client.Write(in)
		client.(*net.TCPConn).CloseWrite()
		client.SetReadDeadline(time.Now().Add(5 * time.Second))
		io.Copy(io.Discard, client)
		client.Close()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("the connection did not end")
		}
	})
}
