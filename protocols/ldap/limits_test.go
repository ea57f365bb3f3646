package ldap

import (
	"bytes"
	"io"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	goldap "github.com/go-ldap/ldap/v3"
)

// TestReadGrowsWithArrivingBytes: a message that announces 1 MiB and
// sends a few bytes costs the reader what arrived, not what was announced.
func TestReadGrowsWithArrivingBytes(t *testing.T) {
	announced := []byte{0x30, 0x83, 0x0f, 0xff, 0xf0} // 1 MiB - 16
	in := append(announced, bytes.Repeat([]byte{0x04}, 100)...)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, err := readMessage(bufioReader(in), 1<<20, func() {})
	runtime.ReadMemStats(&after)
	if err == nil {
		t.Fatal("a truncated message was read")
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 64<<10 {
		t.Fatalf("reading 105 bytes of an announced 1 MiB allocated %d bytes", grew)
	}
	// A message that does arrive whole is read whole, across many
	// buffer growths.
	whole := encodeRawBind(7, "uid="+strings.Repeat("a", 300<<10), "pw")
	p, err := readMessage(bufioReader(whole), 1<<20, func() {})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(p.Bytes(), whole) {
		t.Fatal("the message read differs from the one sent")
	}
}

// TestPreBindCap: before a bind, a message over 64 KiB ends the
// connection even though ldap.max_message_bytes is 1 MiB; once bound, a
// client may send larger requests (a long search filter).
func TestPreBindCap(t *testing.T) {
	r := newRig(t, nil, nil) // default max_message_bytes: 1MiB
	addService(t, r.Store, "app", "app-secret")

	nc, err := net.Dial("tcp", r.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	go nc.Write(encodeRawBind(1, "uid="+strings.Repeat("a", 100<<10), "x"))
	b, _ := io.ReadAll(nc)
	p, err := readMessage(bufioReader(b), 1<<20, func() {})
	if err != nil {
		t.Fatalf("no notice of disconnection for a 100 KiB bind: %v (% x)", err, b)
	}
	if code := p.Children[1].Children[0].Value.(int64); code != resultProtocolError {
		t.Errorf("100 KiB bind before bind: result %d, want protocolError (2)", code)
	}

	c, err := goldap.DialURL(r.url())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Bind("uid=app,ou=services,"+base, "app-secret"); err != nil {
		t.Fatal(err)
	}
	filter := "(uid=" + strings.Repeat("a", 100<<10) + ")"
	res, err := c.Search(goldap.NewSearchRequest(base, goldap.ScopeWholeSubtree, 0, 0, 0, false, filter, []string{"uid"}, nil))
	if err != nil {
		t.Fatalf("a 100 KiB search after bind: %v", err)
	}
	if len(res.Entries) != 0 {
		t.Fatalf("%d entries for a uid nobody has", len(res.Entries))
	}
}
