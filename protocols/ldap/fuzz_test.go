package ldap

import (
	"context"
	"net"
	"testing"
	"time"

	goldap "github.com/go-ldap/ldap/v3"

	"github.com/stepgate/stepgate/internal/testenv"
)

// FuzzConn feeds request bytes to one connection of a real server: it
// must answer or hang up, never panic or hang.
func FuzzConn(f *testing.F) {
	f.Add(encodeRawBind(1, "uid=alice,ou=people,dc=example,dc=org", "classmate123456"))
	f.Add(encodeRawBind(1, "", ""))
	f.Add([]byte{0x30, 0x05, 0x02, 0x01, 0x01, 0x42, 0x00}) // unbind
	f.Add([]byte{0x30, 0x84, 0xff, 0xff, 0xff, 0xff})
	f.Add(append(encodeRawBind(1, "", ""), 0x30, 0x03, 0x02, 0x01))
	f.Add(encodeRawBindWithControls(1, "alice", "classmate123456",
		&goldap.ControlString{ControlType: oidPasswordPolicy},
		&goldap.ControlString{ControlType: "1.2.3", Criticality: true, ControlValue: "x"}))
	r := newRig(f, func(c *Config) {
		c.ReadTimeout = 100 * time.Millisecond
		c.IdleTimeout = 100 * time.Millisecond
		c.MaxMessageBytes = 64 << 10
		c.AnonymousSearch = true
	}, nil)
	r.AddEnrolled(f, "alice", "classmate")
	feed := testenv.NewFeeder(f)
	f.Fuzz(func(t *testing.T, in []byte) {
		feed.Feed(t, in, func(server net.Conn) {
			newConn(r.srv, server, false).serve(context.Background())
		})
	})
}

// encodeRawBindWithControls is encodeRawBind with request controls.
func encodeRawBindWithControls(id int64, name, pw string, controls ...goldap.Control) []byte {
	p := envelope(id)
	p.AppendChild(newBindOp(name, pw))
	appendControls(p, controls)
	return p.Bytes()
}
