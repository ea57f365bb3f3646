package ldap

import (
	"bytes"
	"net"
	"testing"
	"time"

	ber "github.com/go-asn1-ber/asn1-ber"
	goldap "github.com/go-ldap/ldap/v3"

	"github.com/stepgate/stepgate/internal/testenv"
	"github.com/stepgate/stepgate/internal/verifier/verifiertest"
)

// TestProxyAbsentLooksLikeWrongPassword: in proxy mode a name the
// directory does not hold (looked up before the decision) gets the very
// bytes a wrong password gets, and, paced, the same time: the lookup must
// not tell who exists upstream.
func TestProxyAbsentLooksLikeWrongPassword(t *testing.T) {
	p := newProxyRigWith(t, verifiertest.Options{SessionConfig: roomyLimits})
	alice := p.AddEnrolled(t, "alice", "not-used-in-proxy-mode")
	people := ",ou=people," + base
	answer := func(name, pw string) []byte {
		c, err := net.DialTimeout("tcp", p.addr, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(20 * time.Second))
		if _, err := c.Write(encodeRawBind(1, name, pw)); err != nil {
			t.Fatal(err)
		}
		pkt, err := ber.ReadPacket(c)
		if err != nil {
			t.Fatal(err)
		}
		return pkt.Bytes()
	}
	wrong := answer("uid=alice"+people, "wrong-pass"+alice.Code(t))
	for _, name := range []string{"ghost", "uid=ghost" + people, "ghost@example.org"} {
		if got := answer(name, "slapd-pass"+alice.Code(t)); !bytes.Equal(got, wrong) {
			t.Fatalf("absent %q answered %x, a wrong password %x", name, got, wrong)
		}
	}
	if testing.Short() {
		return
	}
	c, err := goldap.DialURL(p.url())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	paths := []struct{ name, dn, pw string }{
		{"absent upstream", "ghost", "slapd-pass"},
		{"wrong password", "uid=alice" + people, "wrong-pass"},
	}
	bind := func(i int) time.Duration {
		start := time.Now()
		err := c.Bind(paths[i].dn, paths[i].pw+alice.Code(t))
		took := time.Since(start)
		if !goldap.IsErrorWithCode(err, goldap.LDAPResultInvalidCredentials) {
			t.Fatalf("%s: %v, want invalidCredentials", paths[i].name, err)
		}
		return took
	}
	for i := 0; i < 20; i++ {
		bind(i % len(paths))
	}
	times := make([][]time.Duration, len(paths))
	for n := 0; n < 100; n++ {
		for i := range paths {
			// A distinct string each time: a repeat is answered from memory.
			paths[i].pw += "x"
			times[i] = append(times[i], bind(i))
		}
	}
	testenv.SameMedians(t, []string{paths[0].name, paths[1].name}, times, 1.5)
}
