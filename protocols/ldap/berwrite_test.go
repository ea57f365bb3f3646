package ldap

import (
	"strings"
	"testing"

	ber "github.com/go-asn1-ber/asn1-ber"
)

// TestEntryEncoding: the hand-written entry encoding decodes as BER with
// the values it was given, across length forms and message IDs.
func TestEntryEncoding(t *testing.T) {
	for _, id := range []int64{0, 1, 127, 128, 255, 256, 65535, 1 << 31} {
		for _, size := range []int{0, 5, 127, 128, 300, 70000} {
			v := strings.Repeat("v", size)
			b := appendEntryMessage(nil, id, "uid=a,dc=example,dc=org", []entryAttr{
				{name: "cn", values: []string{v, "x"}},
				{name: "jpegPhoto", bytes: [][]byte{[]byte(v)}},
			}, false, nil)
			p, err := ber.DecodePacketErr(b)
			if err != nil {
				t.Fatalf("id %d size %d: %v", id, size, err)
			}
			if got := p.Children[0].Value.(int64); got != id {
				t.Fatalf("id %d: decoded %d", id, got)
			}
			op := p.Children[1]
			attrs := op.Children[1].Children
			if op.Tag != 4 || op.Children[0].Value.(string) != "uid=a,dc=example,dc=org" || len(attrs) != 2 ||
				attrs[0].Children[1].Children[0].Value.(string) != v || attrs[0].Children[1].Children[1].Value.(string) != "x" ||
				attrs[1].Children[0].Value.(string) != "jpegPhoto" || string(attrs[1].Children[1].Children[0].ByteValue) != v {
				t.Fatalf("id %d size %d: decoded %s", id, size, ber.DescribePacket(p))
			}
		}
	}
	typesOnly := appendEntryMessage(nil, 2, "dc=x", []entryAttr{{name: "cn", values: []string{"a"}}}, true, nil)
	p, err := ber.DecodePacketErr(typesOnly)
	if err != nil || len(p.Children[1].Children[1].Children[0].Children[1].Children) != 0 {
		t.Fatalf("typesOnly: %v", err)
	}
}
