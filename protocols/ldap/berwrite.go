package ldap

// Search entries are most of what a directory sends, and building them as
// a tree of ber.Packets copies every value once per level; these write
// the bytes directly. Requests and other responses keep using ber.

const (
	tagOctetString = 0x04
	tagInteger     = 0x02
	tagSequence    = 0x30
	tagSet         = 0x31
	tagEntry       = 0x64 // [APPLICATION 4], constructed
)

// appendLength appends a BER definite length.
func appendLength(b []byte, n int) []byte {
	switch {
	case n < 0x80:
		return append(b, byte(n))
	case n < 0x100:
		return append(b, 0x81, byte(n))
	case n < 0x10000:
		return append(b, 0x82, byte(n>>8), byte(n))
	case n < 0x1000000:
		return append(b, 0x83, byte(n>>16), byte(n>>8), byte(n))
	}
	return append(b, 0x84, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
}

func lengthSize(n int) int {
	switch {
	case n < 0x80:
		return 1
	case n < 0x100:
		return 2
	case n < 0x10000:
		return 3
	case n < 0x1000000:
		return 4
	}
	return 5
}

func tlvSize(n int) int { return 1 + lengthSize(n) + n }

func appendOctets[S ~string | ~[]byte](b []byte, v S) []byte {
	b = append(b, tagOctetString)
	b = appendLength(b, len(v))
	return append(b, v...)
}

// appendInt appends a non-negative INTEGER (message IDs).
func appendInt(b []byte, v int64) []byte {
	var tmp [9]byte
	n := 0
	for {
		tmp[8-n] = byte(v)
		n++
		v >>= 8
		if v == 0 {
			break
		}
	}
	if tmp[9-n]&0x80 != 0 { // keep it positive
		n++
		tmp[9-n] = 0
	}
	b = append(b, tagInteger, byte(n))
	return append(b, tmp[9-n:]...)
}

func intSize(v int64) int {
	n := 1
	for x := v >> 8; x != 0; x >>= 8 {
		n++
	}
	if (v>>(8*(n-1)))&0x80 != 0 {
		n++
	}
	return 2 + n
}

// entryAttr is an attribute to write: values as strings or as bytes.
type entryAttr struct {
	name   string
	values []string
	bytes  [][]byte
}

func (a entryAttr) valuesSize(typesOnly bool) int {
	if typesOnly {
		return 0
	}
	n := 0
	for _, v := range a.values {
		n += tlvSize(len(v))
	}
	for _, v := range a.bytes {
		n += tlvSize(len(v))
	}
	return n
}

// appendEntryMessage appends a whole LDAPMessage carrying a
// SearchResultEntry, and controls (already encoded) when there are any.
func appendEntryMessage(b []byte, id int64, dn string, attrs []entryAttr, typesOnly bool, controls []byte) []byte {
	list := 0
	for _, a := range attrs {
		list += tlvSize(tlvSize(len(a.name)) + tlvSize(a.valuesSize(typesOnly)))
	}
	op := tlvSize(len(dn)) + tlvSize(list)
	msg := intSize(id) + tlvSize(op) + len(controls)
	b = append(b, tagSequence)
	b = appendLength(b, msg)
	b = appendInt(b, id)
	b = append(b, tagEntry)
	b = appendLength(b, op)
	b = appendOctets(b, dn)
	b = append(b, tagSequence)
	b = appendLength(b, list)
	for _, a := range attrs {
		vs := a.valuesSize(typesOnly)
		b = append(b, tagSequence)
		b = appendLength(b, tlvSize(len(a.name))+tlvSize(vs))
		b = appendOctets(b, a.name)
		b = append(b, tagSet)
		b = appendLength(b, vs)
		if typesOnly {
			continue
		}
		for _, v := range a.values {
			b = appendOctets(b, v)
		}
		for _, v := range a.bytes {
			b = appendOctets(b, v)
		}
	}
	return append(b, controls...)
}
