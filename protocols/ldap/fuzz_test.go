package ldap

import (
	"context"
	"io"
	"net"
	"testing"
	"time"
)

// FuzzConn feeds request bytes to one connection of a real server: it
// must answer or hang up, never panic or hang.
func FuzzConn(f *testing.F) {
	f.Add(encodeRawBind(1, "uid=alice,ou=people,dc=example,dc=org", "classmate123456"))
	f.Add(encodeRawBind(1, "", ""))
	f.Add([]byte{0x30, 0x05, 0x02, 0x01, 0x01, 0x42, 0x00}) // unbind
	f.Add([]byte{0x30, 0x84, 0xff, 0xff, 0xff, 0xff})
	f.Add(append(encodeRawBind(1, "", ""), 0x30, 0x03, 0x02, 0x01))
	r := newRig(f, func(c *Config) {
		c.ReadTimeout = 100 * time.Millisecond
		c.IdleTimeout = 100 * time.Millisecond
		c.MaxMessageBytes = 64 << 10
		c.AnonymousSearch = true
	}, nil)
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
			newConn(r.srv, server, false).serve(context.Background())
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
