package ldap

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"slices"

	ber "github.com/go-asn1-ber/asn1-ber"
	goldap "github.com/go-ldap/ldap/v3"
)

// The wire stays in this file: requests are decoded into the plain
// structs below and responses are encoded from them, so the rest of the
// package never touches a BER packet (except search filters, which are
// evaluated as the tree they are).

// Extended operations stepgate answers.
const (
	oidStartTLS = "1.3.6.1.4.1.1466.20037"
	oidWhoAmI   = "1.3.6.1.4.1.4203.1.11.3"
	// oidNoticeOfDisconnection is the unsolicited notification a server
	// sends (message ID 0) before it closes a connection (RFC 4511 4.4.1).
	oidNoticeOfDisconnection = "1.3.6.1.4.1.1466.20036"
)

// errMalformed marks input that is not an LDAP message: the connection
// gets a notice of disconnection (protocolError) and is closed.
var errMalformed = errors.New("malformed LDAP message")

// errTooLarge marks a message over the configured size cap.
var errTooLarge = errors.New("LDAP message over the size limit")

// message is one decoded request.
type message struct {
	id  int64
	op  ber.Tag // application tag of the protocol op
	req any     // *bindRequest, *searchRequest, ...
	// pkt is the message as it came: a relayed search goes upstream
	// from it, as the client encoded it.
	pkt      *ber.Packet
	controls []control
}

// control is a request control as the client sent it (RFC 4511 4.1.11).
// Its value stays bytes: clients send controls stepgate does not know
// (or knows, with no value: nslcd's password-policy request), and what
// stepgate does not act on it relays or ignores, so a value it could not
// parse must not end the connection.
type control struct {
	oid      string
	critical bool
	value    []byte // nil when absent
}

// has reports whether the request carries the control oid.
func (m *message) has(oid string) bool {
	for _, c := range m.controls {
		if c.oid == oid {
			return true
		}
	}
	return false
}

type bindRequest struct {
	version  int64
	name     string
	simple   bool // false: SASL
	password string
}

type searchRequest struct {
	base         string
	scope        int64
	deref        int64
	sizeLimit    int64
	timeLimit    int64
	typesOnly    bool
	filter       *ber.Packet
	attributes   []string
	filterString string // for the log only, never holds a secret
}

type compareRequest struct {
	dn, attr, value string
}

type extendedRequest struct {
	oid   string
	value []byte
}

type abandonRequest struct{ id int64 }

// preBindMaxBytes caps a message on a connection that has not bound: a
// bind request (name, password and code) fits easily, and an anonymous
// client gets no more from the server than that.
const preBindMaxBytes = 64 << 10

// readMessage reads one LDAPMessage of at most max bytes. onStart is
// called once the first byte has arrived, so the caller can switch from
// the idle timeout to the read timeout of a started message.
func readMessage(r *bufio.Reader, max int, onStart func()) (*ber.Packet, error) {
	tag, err := r.ReadByte()
	if err != nil {
		return nil, err
	}
	onStart()
	if tag != 0x30 { // universal, constructed, SEQUENCE
		return nil, fmt.Errorf("%w: message starts with 0x%02x, not a SEQUENCE", errMalformed, tag)
	}
	header := []byte{tag}
	l, err := r.ReadByte()
	if err != nil {
		return nil, unexpectedEOF(err)
	}
	header = append(header, l)
	length := int(l)
	if l&0x80 != 0 {
		n := int(l & 0x7f)
		if n == 0 || n > 4 {
			return nil, fmt.Errorf("%w: length of %d bytes", errMalformed, n)
		}
		length = 0
		for i := 0; i < n; i++ {
			b, err := r.ReadByte()
			if err != nil {
				return nil, unexpectedEOF(err)
			}
			header = append(header, b)
			length = length<<8 | int(b)
		}
	}
	if length < 0 || len(header)+length > max {
		return nil, fmt.Errorf("%w: %d bytes announced, at most %d accepted", errTooLarge, length, max)
	}
	buf, err := readGrowing(r, header, len(header)+length)
	if err != nil {
		return nil, unexpectedEOF(err)
	}
	p, err := ber.DecodePacketErr(buf)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errMalformed, err)
	}
	return p, nil
}

// firstChunk is the buffer a message starts with; a bind is a few
// hundred bytes.
const firstChunk = 512

// readGrowing reads a message of total bytes that begins with head. The
// buffer grows (doubling) with the bytes that arrive, not with the length
// the client announced: a client that announces a large message and
// sends little makes the server hold little.
func readGrowing(r io.Reader, head []byte, total int) ([]byte, error) {
	buf := make([]byte, len(head), min(total, max(firstChunk, len(head))))
	copy(buf, head)
	for len(buf) < total {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, min(cap(buf), total-len(buf)))
		}
		n, err := r.Read(buf[len(buf):min(cap(buf), total)])
		buf = buf[:len(buf)+n]
		if err != nil && len(buf) < total {
			return nil, err
		}
	}
	return buf, nil
}

func unexpectedEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: connection closed inside a message", errMalformed)
	}
	return err
}

// decode turns an LDAPMessage packet into a message.
func decode(p *ber.Packet) (*message, error) {
	if p.ClassType != ber.ClassUniversal || p.Tag != ber.TagSequence || len(p.Children) < 2 {
		return nil, fmt.Errorf("%w: not an LDAPMessage", errMalformed)
	}
	idp := p.Children[0]
	id, ok := idp.Value.(int64)
	if idp.Tag != ber.TagInteger || !ok || id < 0 {
		return nil, fmt.Errorf("%w: bad message ID", errMalformed)
	}
	op := p.Children[1]
	if op.ClassType != ber.ClassApplication {
		return nil, fmt.Errorf("%w: protocol op is not an application tag", errMalformed)
	}
	m := &message{id: id, op: op.Tag, pkt: p}
	if len(p.Children) > 2 {
		c := p.Children[2]
		if c.ClassType != ber.ClassContext || c.Tag != 0 {
			return nil, fmt.Errorf("%w: bad controls", errMalformed)
		}
		for _, cp := range c.Children {
			ctl, err := decodeControl(cp)
			if err != nil {
				return nil, err
			}
			m.controls = append(m.controls, ctl)
		}
	}
	var err error
	switch op.Tag {
	case goldap.ApplicationBindRequest:
		m.req, err = decodeBind(op)
	case goldap.ApplicationSearchRequest:
		m.req, err = decodeSearch(op)
	case goldap.ApplicationCompareRequest:
		m.req, err = decodeCompare(op)
	case goldap.ApplicationExtendedRequest:
		m.req, err = decodeExtended(op)
	case goldap.ApplicationAbandonRequest:
		n, ok := intValue(op)
		if !ok {
			return nil, fmt.Errorf("%w: bad abandon request", errMalformed)
		}
		m.req = &abandonRequest{id: n}
	case goldap.ApplicationUnbindRequest,
		goldap.ApplicationModifyRequest, goldap.ApplicationAddRequest,
		goldap.ApplicationDelRequest, goldap.ApplicationModifyDNRequest:
		// Answered by tag alone.
	default:
		return nil, fmt.Errorf("%w: unknown protocol op %d", errMalformed, op.Tag)
	}
	if err != nil {
		return nil, err
	}
	return m, nil
}

// decodeControl reads Control ::= SEQUENCE { controlType LDAPOID,
// criticality BOOLEAN DEFAULT FALSE, controlValue OCTET STRING OPTIONAL }.
// Only that shape is checked; the value is the control's own business.
func decodeControl(p *ber.Packet) (control, error) {
	bad := func(why string) (control, error) {
		return control{}, fmt.Errorf("%w: control: %s", errMalformed, why)
	}
	if p.ClassType != ber.ClassUniversal || p.Tag != ber.TagSequence || len(p.Children) < 1 || len(p.Children) > 3 {
		return bad("not a SEQUENCE of type, criticality and value")
	}
	t := p.Children[0]
	if t.ClassType != ber.ClassUniversal || t.Tag != ber.TagOctetString || t.Data == nil || t.Data.Len() == 0 {
		return bad("no control type")
	}
	c := control{oid: string(t.Data.Bytes())}
	rest := p.Children[1:]
	if len(rest) > 0 && rest[0].ClassType == ber.ClassUniversal && rest[0].Tag == ber.TagBoolean {
		b, ok := rest[0].Value.(bool)
		if !ok {
			return bad("criticality of " + c.oid + " is not a BOOLEAN")
		}
		c.critical = b
		rest = rest[1:]
	}
	if len(rest) > 0 {
		v := rest[0]
		if len(rest) > 1 || v.ClassType != ber.ClassUniversal || v.Tag != ber.TagOctetString {
			return bad("value of " + c.oid + " is not an OCTET STRING")
		}
		c.value = []byte{}
		if v.Data != nil {
			c.value = append(c.value, v.Data.Bytes()...)
		}
	}
	return c, nil
}

func decodeBind(op *ber.Packet) (*bindRequest, error) {
	if len(op.Children) != 3 {
		return nil, fmt.Errorf("%w: bind request with %d fields", errMalformed, len(op.Children))
	}
	v, ok := op.Children[0].Value.(int64)
	if !ok {
		return nil, fmt.Errorf("%w: bind version", errMalformed)
	}
	b := &bindRequest{version: v, name: stringValue(op.Children[1])}
	auth := op.Children[2]
	switch {
	case auth.ClassType == ber.ClassContext && auth.Tag == 0:
		b.simple = true
		b.password = string(auth.Data.Bytes())
	case auth.ClassType == ber.ClassContext && auth.Tag == 3:
		b.simple = false
	default:
		return nil, fmt.Errorf("%w: bind authentication choice", errMalformed)
	}
	return b, nil
}

func decodeSearch(op *ber.Packet) (*searchRequest, error) {
	c := op.Children
	if len(c) != 8 {
		return nil, fmt.Errorf("%w: search request with %d fields", errMalformed, len(c))
	}
	s := &searchRequest{base: stringValue(c[0]), filter: c[6]}
	var ok1, ok2, ok3 bool
	s.scope, ok1 = intValue(c[1])
	s.deref, _ = intValue(c[2])
	s.sizeLimit, ok2 = intValue(c[3])
	s.timeLimit, ok3 = intValue(c[4])
	tb, ok4 := c[5].Value.(bool)
	if !ok1 || !ok2 || !ok3 || !ok4 || s.scope < 0 || s.scope > 2 || s.sizeLimit < 0 || s.timeLimit < 0 {
		return nil, fmt.Errorf("%w: search request fields", errMalformed)
	}
	s.typesOnly = tb
	if err := checkFilter(s.filter, 0); err != nil {
		return nil, err
	}
	if f, err := goldap.DecompileFilter(s.filter); err == nil {
		s.filterString = f
	}
	for _, a := range c[7].Children {
		s.attributes = append(s.attributes, stringValue(a))
	}
	return s, nil
}

func decodeCompare(op *ber.Packet) (*compareRequest, error) {
	if len(op.Children) != 2 || len(op.Children[1].Children) != 2 {
		return nil, fmt.Errorf("%w: compare request", errMalformed)
	}
	ava := op.Children[1].Children
	return &compareRequest{dn: stringValue(op.Children[0]), attr: stringValue(ava[0]), value: stringValue(ava[1])}, nil
}

func decodeExtended(op *ber.Packet) (*extendedRequest, error) {
	if len(op.Children) < 1 || op.Children[0].ClassType != ber.ClassContext || op.Children[0].Tag != 0 {
		return nil, fmt.Errorf("%w: extended request without a name", errMalformed)
	}
	e := &extendedRequest{oid: string(op.Children[0].Data.Bytes())}
	if len(op.Children) > 1 {
		e.value = op.Children[1].Data.Bytes()
	}
	return e, nil
}

func stringValue(p *ber.Packet) string {
	if s, ok := p.Value.(string); ok {
		return s
	}
	return string(p.Data.Bytes())
}

func intValue(p *ber.Packet) (int64, bool) {
	if v, ok := p.Value.(int64); ok {
		return v, true
	}
	// Context- and application-tagged integers are not decoded by ber.
	v, err := ber.ParseInt64(p.Data.Bytes())
	return v, err == nil && len(p.Data.Bytes()) > 0
}

// result is an LDAPResult: what every response but an entry carries.
type result struct {
	code       uint16
	matchedDN  string
	diagnostic string
	// locked: a lockout refused the bind, which the password-policy
	// response control says when the client asked for it.
	locked bool
}

func envelope(id int64) *ber.Packet {
	p := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "LDAP Message")
	p.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, id, "Message ID"))
	return p
}

func appendResult(op *ber.Packet, r result) {
	op.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagEnumerated, int64(r.code), "resultCode"))
	op.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, r.matchedDN, "matchedDN"))
	op.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, r.diagnostic, "diagnosticMessage"))
}

// encodeResult is a response of type tag carrying only an LDAPResult,
// and the response controls, if any.
func encodeResult(id int64, tag ber.Tag, r result, controls ...goldap.Control) []byte {
	p := envelope(id)
	op := ber.Encode(ber.ClassApplication, ber.TypeConstructed, tag, nil, "response")
	appendResult(op, r)
	p.AppendChild(op)
	appendControls(p, controls)
	return p.Bytes()
}

func appendControls(p *ber.Packet, controls []goldap.Control) {
	if len(controls) == 0 {
		return
	}
	cp := ber.Encode(ber.ClassContext, ber.TypeConstructed, 0, nil, "Controls")
	for _, c := range controls {
		cp.AppendChild(c.Encode())
	}
	p.AppendChild(cp)
}

// encodeExtended is an ExtendedResponse with an optional name and value.
func encodeExtended(id int64, r result, name string, value *string) []byte {
	p := envelope(id)
	op := ber.Encode(ber.ClassApplication, ber.TypeConstructed, goldap.ApplicationExtendedResponse, nil, "Extended Response")
	appendResult(op, r)
	if name != "" {
		op.AppendChild(ber.NewString(ber.ClassContext, ber.TypePrimitive, 10, name, "responseName"))
	}
	if value != nil {
		op.AppendChild(ber.NewString(ber.ClassContext, ber.TypePrimitive, 11, *value, "responseValue"))
	}
	p.AppendChild(op)
	return p.Bytes()
}

// attribute is one attribute of an entry, in the order it is sent.
type attribute struct {
	name   string
	values []string
}

// encodeEntry is a SearchResultEntry.
func encodeEntry(id int64, dn string, attrs []attribute, typesOnly bool) []byte {
	out := make([]entryAttr, len(attrs))
	for i, a := range attrs {
		out[i] = entryAttr{name: a.name, values: a.values}
	}
	return appendEntryMessage(nil, id, dn, out, typesOnly, nil)
}
