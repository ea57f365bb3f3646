package listener

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"
)

func dialFrom(t *testing.T, from, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 10 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial from %s: %v", from, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// served reports whether c reached the handler (which says HELLO) rather
// than being refused (BUSY).
func served(t *testing.T, c net.Conn) bool {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("no greeting: %v", err)
	}
	return line == "HELLO\n"
}

// TestPerAddressCap: one address over its cap is refused while another
// address still gets in; a rule gives a network its own cap; two front
// ends share the count; a closed connection frees its place.
func TestPerAddressCap(t *testing.T) {
	limits := NewAddrLimits(2, []AddrRule{
		{Prefix: netip.MustParsePrefix("127.0.0.3/32"), Max: 4},
		{Prefix: netip.MustParsePrefix("127.0.0.0/30"), Max: 1}, // less specific than /32
	})
	var addrs []string
	for i := 0; i < 2; i++ {
		set, err := Listen(Config{Name: "t", Plain: "127.0.0.1:0", PlainKey: "t.listen", MaxConns: 100, PerAddress: limits,
			Refuse: func(nc net.Conn) { io.WriteString(nc, "BUSY\n") },
			Handle: func(ctx context.Context, c Conn) {
				io.WriteString(c.Net, "HELLO\n")
				io.Copy(io.Discard, c.Net)
			}})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- set.Serve(ctx) }()
		t.Cleanup(func() { cancel(); <-done })
		addrs = append(addrs, set.Addr(false))
	}
	// 127.0.0.5: the default cap of 2, counted across both sets.
	first := dialFrom(t, "127.0.0.5", addrs[0])
	if !served(t, first) || !served(t, dialFrom(t, "127.0.0.5", addrs[1])) {
		t.Fatal("the first two connections were refused")
	}
	if served(t, dialFrom(t, "127.0.0.5", addrs[0])) || served(t, dialFrom(t, "127.0.0.5", addrs[1])) {
		t.Fatal("a third connection from one address was served")
	}
	// Another address is not affected.
	if !served(t, dialFrom(t, "127.0.0.6", addrs[0])) {
		t.Fatal("another address was refused")
	}
	// 127.0.0.3 has a cap of 4 (its /32 rule beats the /30 one); 127.0.0.2 is in the /30.
	for i := 0; i < 4; i++ {
		if !served(t, dialFrom(t, "127.0.0.3", addrs[i%2])) {
			t.Fatalf("connection %d from 127.0.0.3 refused under its cap of 4", i+1)
		}
	}
	if served(t, dialFrom(t, "127.0.0.3", addrs[0])) {
		t.Fatal("a fifth connection from 127.0.0.3 was served")
	}
	if !served(t, dialFrom(t, "127.0.0.2", addrs[0])) || served(t, dialFrom(t, "127.0.0.2", addrs[0])) {
		t.Fatal("127.0.0.2 does not have the /30 rule's cap of 1")
	}
	// Closing a connection gives its place back (once the handler ends).
	first.Close()
	ok := false
	for i := 0; i < 100 && !ok; i++ {
		c := dialFrom(t, "127.0.0.5", addrs[0])
		ok = served(t, c)
		if !ok {
			time.Sleep(20 * time.Millisecond)
		}
	}
	if !ok {
		t.Fatal("a closed connection's place was not given back")
	}
}

func TestAddrKey(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.7:389":                 "192.0.2.7",
		"[::ffff:192.0.2.7]:389":        "192.0.2.7",
		"[2001:db8:1:2:3:4:5:6]:389":    "2001:db8:1:2::",
		"[2001:db8:1:2:ffff::1%eth0]:1": "2001:db8:1:2::",
	} {
		a, err := net.ResolveTCPAddr("tcp", in)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := key(a)
		if !ok || got.String() != want {
			t.Errorf("key(%s) = %v, want %s", in, got, want)
		}
	}
}
