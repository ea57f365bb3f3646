package relay

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"io"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"
)

// tcpPair is two ends of one loopback TCP connection.
func tcpPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ch := make(chan net.Conn, 1)
	go func() {
		c, _ := l.Accept()
		ch <- c
	}()
	client, err = net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-ch
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

// TestPipeRelaysEveryByte: what the reader had buffered, then a stream
// longer than the relay's buffer and not a multiple of it, arrive
// unchanged and in order, and the end of the stream ends the pipe.
func TestPipeRelaysEveryByte(t *testing.T) {
	from, in := tcpPair(t) // the sender writes to from; pipe reads in
	out, to := tcpPair(t)  // pipe writes out; the receiver reads to
	payload := make([]byte, 5<<20+12345)
	rand.Read(payload)
	done := make(chan struct{})
	br := bufio.NewReader(strings.NewReader("pipelined "))
	br.Peek(len("pipelined ")) // as the dialogue leaves it: read, not yet used
	go func() {
		pipe(out, br, in)
		out.Close()
		close(done)
	}()
	go func() {
		from.Write(payload)
		from.Close()
	}()
	to.SetReadDeadline(time.Now().Add(30 * time.Second))
	got, err := io.ReadAll(to)
	if err != nil {
		t.Fatal(err)
	}
	if want := append([]byte("pipelined "), payload...); !bytes.Equal(got, want) {
		t.Fatalf("relayed %d bytes, want %d, or different bytes", len(got), len(want))
	}
	<-done
}

// TestIdlePipesHoldNoBuffer: a relayed connection waiting for bytes holds
// no relay buffer; 200 of them would hold 50 MiB if each did.
func TestIdlePipesHoldNoBuffer(t *testing.T) {
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	before := ms.HeapAlloc
	var senders []net.Conn
	for i := 0; i < 200; i++ {
		from, in := tcpPair(t)
		out, _ := tcpPair(t)
		senders = append(senders, from)
		go pipe(out, bufio.NewReader(strings.NewReader("")), in)
	}
	// One burst each, then idle.
	for _, s := range senders {
		s.Write([]byte("a line\r\n"))
	}
	time.Sleep(200 * time.Millisecond)
	// Buffers given back stay in the pool until two collections.
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	if grew := int64(ms.HeapAlloc) - int64(before); grew > 10<<20 {
		t.Errorf("200 idle relayed connections grew the heap by %d MiB", grew>>20)
	}
}
