package testenv

import (
	"io"
	"net"
	"testing"
	"time"
)

// Feeder hands inputs, one connection each, to a front end's connection
// handler: the fuzz targets' way in. It uses a loopback TCP pair rather
// than net.Pipe so that the client can half-close after its bytes, and
// each input ends at once instead of at a timeout.
type Feeder struct{ ln net.Listener }

// NewFeeder listens on a free loopback port until t ends.
func NewFeeder(t testing.TB) *Feeder {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return &Feeder{ln: ln}
}

// Feed sends in on a fresh connection, which serve handles as a server
// would; it reads whatever comes back, and fails t unless serve returns
// within five seconds of the client's half-close.
func (f *Feeder) Feed(t *testing.T, in []byte, serve func(server net.Conn)) {
	t.Helper()
	client, err := net.Dial("tcp", f.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, err := f.ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		serve(server)
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
}
