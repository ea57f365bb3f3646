package listener

import (
	"bufio"
	"context"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// TestCapAndShutdown: one connection over the cap is refused with the
// protocol's words; shutdown closes the open ones and waits for them.
func TestCapAndShutdown(t *testing.T) {
	handled := make(chan struct{}, 4)
	set, err := Listen(Config{Name: "echo", Plain: "127.0.0.1:0", PlainKey: "echo.listen", MaxConns: 2,
		Refuse: func(nc net.Conn) { io.WriteString(nc, "BUSY\n") },
		Handle: func(ctx context.Context, c Conn) {
			handled <- struct{}{}
			io.Copy(c.Net, c.Net) // echo until closed
		}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(Config{Plain: set.Addr(false), PlainKey: "echo.listen"}); err == nil || !strings.Contains(err.Error(), "echo.listen") {
		t.Fatalf("second listener on the same address: %v", err)
	}
	if _, err := Listen(Config{Implicit: "127.0.0.1:0", ImplicitKey: "echo.tls_listen"}); err == nil {
		t.Fatal("an implicit-TLS listener without a certificate")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- set.Serve(ctx) }()
	var held []net.Conn
	for i := 0; i < 2; i++ {
		c, err := net.Dial("tcp", set.Addr(false))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		held = append(held, c)
		<-handled
	}
	over, err := net.Dial("tcp", set.Addr(false))
	if err != nil {
		t.Fatal(err)
	}
	over.SetReadDeadline(time.Now().Add(10 * time.Second))
	if line, _ := bufio.NewReader(over).ReadString('\n'); line != "BUSY\n" {
		t.Fatalf("over the cap: %q", line)
	}
	if set.Conns() != 2 {
		t.Fatalf("Conns = %d, want 2", set.Conns())
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after shutdown")
	}
	for _, c := range held {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil {
			t.Fatal("a connection stayed open after shutdown")
		}
	}
}
