package ldap

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	ber "github.com/go-asn1-ber/asn1-ber"
	goldap "github.com/go-ldap/ldap/v3"
)

// relayBase is where the relay's message IDs on an upstream connection
// start: go-ldap counts its own from 1 and would need a billion requests
// on one connection to get here.
const relayBase = 1 << 30

// maxUpstreamMessage caps one message from the upstream directory: a
// bigger one is taken for garbage, not an entry.
const maxUpstreamMessage = 64 << 20

// upstream is one upstream connection. go-ldap's client does the binds,
// the identity lookup, compares and who-am-i on it; searches are relayed
// as raw BER: the directory's messages go to the client as they came,
// with the client's message ID, every control and every referral URI,
// without being decoded into entries and encoded again.
type upstream struct {
	*goldap.Conn
	mux *muxConn
	// boundDN and boundPW say as whom, with which password (keyed hash)
	// and when the last upstream bind on this connection succeeded.
	boundDN string
	boundPW [32]byte
	boundAt time.Time
}

// muxConn sits between the socket and go-ldap: one goroutine reads the
// upstream's messages, hands go-ldap those of its own requests through a
// pipe and writes the relay's straight to the client.
type muxConn struct {
	net.Conn // the socket (TLS on where configured); Read and Close are ours
	pr       *io.PipeReader
	pw       *io.PipeWriter
	wmu      sync.Mutex // one whole message on the socket at a time
	log      *slog.Logger
	timeout  time.Duration
	closed   sync.Once

	mu   sync.Mutex
	op   *relayOp // the relayed search in progress, or nil
	next int64
	err  error // why the reader stopped
}

// relayOp is one relayed search: its upstream ID, and where its
// messages go.
type relayOp struct {
	id   int64
	sink func(msg []byte, last bool) error
	done chan error
	// extended is when the read deadline was last moved on.
	extended time.Time
}

func newMuxConn(nc net.Conn, timeout time.Duration, log *slog.Logger) *muxConn {
	pr, pw := io.Pipe()
	m := &muxConn{Conn: nc, pr: pr, pw: pw, log: log, timeout: timeout}
	go m.read()
	return m
}

// Read is go-ldap's side: the messages of its own requests.
func (m *muxConn) Read(b []byte) (int, error) { return m.pr.Read(b) }

// Write sends one whole message (go-ldap writes each in one call).
func (m *muxConn) Write(b []byte) (int, error) {
	m.wmu.Lock()
	defer m.wmu.Unlock()
	return m.Conn.Write(b)
}

func (m *muxConn) Close() error {
	m.closed.Do(func() {
		m.Conn.Close()
		m.pr.CloseWithError(net.ErrClosed)
	})
	return nil
}

// read frames the upstream's messages until the connection ends. A
// message that is not an LDAPMessage, or a relay message nobody asked
// for, ends the connection: nothing after it can be trusted to be framed.
func (m *muxConn) read() {
	br := bufio.NewReaderSize(m.Conn, 32<<10)
	var scratch []byte
	var err error
	for {
		var hdr, total int
		if hdr, total, err = frame(br); err != nil {
			break
		}
		var msg []byte
		peeked := total <= br.Size()
		if peeked {
			if msg, err = br.Peek(total); err != nil {
				err = unexpectedEOF(err)
				break
			}
		} else {
			if cap(scratch) < total {
				scratch = make([]byte, total)
			}
			msg = scratch[:total]
			if _, err = io.ReadFull(br, msg); err != nil {
				err = unexpectedEOF(err)
				break
			}
		}
		id, rest, perr := splitID(msg, hdr)
		if perr != nil {
			err = perr
			break
		}
		if id < relayBase {
			if _, err = m.pw.Write(msg); err != nil {
				break
			}
		} else if err = m.relay(id, rest); err != nil {
			break
		}
		if peeked {
			br.Discard(total)
		}
		if cap(scratch) > 1<<20 {
			scratch = nil // one huge entry does not stay with the connection
		}
	}
	m.stop(err)
}

// stop ends the connection after the reader stopped with err.
func (m *muxConn) stop(err error) {
	if errors.Is(err, errMalformed) || errors.Is(err, errTooLarge) {
		m.log.Warn("upstream directory connection closed: bad message from the directory", "err", err)
	}
	m.mu.Lock()
	m.err = err
	op := m.op
	m.op = nil
	m.mu.Unlock()
	m.pw.CloseWithError(err)
	m.Close()
	if op != nil {
		op.done <- err
	}
}

// relay hands one message of the relayed search to the client.
func (m *muxConn) relay(id int64, rest []byte) error {
	m.mu.Lock()
	op := m.op
	m.mu.Unlock()
	if op == nil || op.id != id {
		return fmt.Errorf("%w: message ID %d answers no request", errMalformed, id)
	}
	if len(rest) == 0 {
		return fmt.Errorf("%w: message without a protocol op", errMalformed)
	}
	last := rest[0] == 0x65 // [APPLICATION 5] SearchResultDone
	if err := op.sink(rest, last); err != nil {
		// The client went away: this search's answer has nowhere to go,
		// and the upstream is still sending it.
		return fmt.Errorf("writing to the client: %w", err)
	}
	m.mu.Lock()
	if last {
		m.op = nil
		if m.timeout > 0 {
			m.Conn.SetReadDeadline(time.Time{})
		}
	} else if m.timeout > 0 {
		if now := time.Now(); now.Sub(op.extended) > m.timeout/4 {
			op.extended = now
			m.Conn.SetReadDeadline(now.Add(m.timeout))
		}
	}
	m.mu.Unlock()
	if last {
		op.done <- nil
	}
	return nil
}

// search sends req (a SearchRequest protocol op with its controls packet,
// or nil) upstream under a relay ID and streams the answer to sink until
// SearchResultDone. An error means the upstream connection is gone.
func (m *muxConn) search(ctx context.Context, op *ber.Packet, controls *ber.Packet, sink func([]byte, bool) error) error {
	m.mu.Lock()
	if m.err != nil {
		err := m.err
		m.mu.Unlock()
		return err
	}
	if m.op != nil {
		m.mu.Unlock()
		return errors.New("a relayed search is already in progress")
	}
	id := relayBase + m.next
	m.next = (m.next + 1) % (1<<31 - relayBase)
	r := &relayOp{id: id, sink: sink, done: make(chan error, 1), extended: time.Now()}
	m.op = r
	if m.timeout > 0 {
		// Set with the op under mu, and cleared by the reader under mu
		// when the op ends: no deadline outlives its search.
		m.Conn.SetReadDeadline(r.extended.Add(m.timeout))
	}
	m.mu.Unlock()
	env := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "")
	env.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, id, ""))
	env.AppendChild(op)
	if controls != nil {
		env.AppendChild(controls)
	}
	if _, err := m.Write(env.Bytes()); err != nil {
		m.Close()
		<-r.done
		return err
	}
	select {
	case err := <-r.done:
		return err
	case <-ctx.Done():
		m.Close()
		<-r.done
		return ctx.Err()
	}
}

// frame reads the header of the next message: its length in bytes and
// the whole message's. The header is left in br.
func frame(br *bufio.Reader) (hdr, total int, err error) {
	b, err := br.Peek(2)
	if err != nil {
		if len(b) > 0 {
			err = unexpectedEOF(err)
		}
		return 0, 0, err
	}
	if b[0] != 0x30 {
		return 0, 0, fmt.Errorf("%w: message starts with 0x%02x, not a SEQUENCE", errMalformed, b[0])
	}
	length, hdr := int(b[1]), 2
	if b[1]&0x80 != 0 {
		n := int(b[1] & 0x7f)
		if n == 0 || n > 4 {
			return 0, 0, fmt.Errorf("%w: length of %d bytes", errMalformed, n)
		}
		h, err := br.Peek(2 + n)
		if err != nil {
			return 0, 0, unexpectedEOF(err)
		}
		length = 0
		for _, x := range h[2:] {
			length = length<<8 | int(x)
		}
		hdr = 2 + n
	}
	if length > maxUpstreamMessage {
		return 0, 0, fmt.Errorf("%w: %d bytes announced, at most %d accepted", errTooLarge, length, maxUpstreamMessage)
	}
	return hdr, hdr + length, nil
}

// splitID reads the message ID that follows the header and returns it
// with the rest of the message (protocol op and controls).
func splitID(msg []byte, hdr int) (int64, []byte, error) {
	b := msg[hdr:]
	if len(b) < 3 || b[0] != 0x02 || b[1] == 0 || b[1] > 4 || int(b[1])+2 > len(b) {
		return 0, nil, fmt.Errorf("%w: no message ID", errMalformed)
	}
	n := int(b[1])
	if b[2]&0x80 != 0 {
		return 0, nil, fmt.Errorf("%w: negative message ID", errMalformed)
	}
	var id int64
	for _, x := range b[2 : 2+n] {
		id = id<<8 | int64(x)
	}
	return id, b[2+n:], nil
}

// appendMessage appends an LDAPMessage with message ID id around rest (a
// protocol op and its controls, as the upstream sent them).
func appendMessage(dst []byte, id int64, rest []byte) []byte {
	var idb [5]byte
	n := 0
	for v := id; ; v >>= 8 {
		n++
		if v < 0x80 {
			break
		}
	}
	for i := n - 1; i >= 0; i-- {
		idb[i] = byte(id >> (8 * (n - 1 - i)))
	}
	content := 2 + n + len(rest)
	dst = append(dst, 0x30)
	switch {
	case content < 0x80:
		dst = append(dst, byte(content))
	case content < 1<<8:
		dst = append(dst, 0x81, byte(content))
	case content < 1<<16:
		dst = append(dst, 0x82, byte(content>>8), byte(content))
	case content < 1<<24:
		dst = append(dst, 0x83, byte(content>>16), byte(content>>8), byte(content))
	default:
		dst = append(dst, 0x84, byte(content>>24), byte(content>>16), byte(content>>8), byte(content))
	}
	dst = append(dst, 0x02, byte(n))
	dst = append(dst, idb[:n]...)
	return append(dst, rest...)
}
