package postfix_test

import (
	"net"
	"testing"

	"github.com/stepgate/stepgate/internal/testenv/dovecot"
	"github.com/stepgate/stepgate/internal/testenv/postfix"
)

// TestStarts: the throwaway Postfix answers on its loopback port and
// stops again.
func TestStarts(t *testing.T) {
	dc := dovecot.Start(t, dovecot.Options{Users: map[string]string{"alice": "classmate"}, AuthSocket: true})
	pf := postfix.Start(t, postfix.Options{AuthSocket: dc.AuthSocket(), Users: []string{"alice"}})
	c, err := net.Dial("tcp", pf.Addr())
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	pf.Stop()
	if c, err := net.Dial("tcp", pf.Addr()); err == nil {
		c.Close()
		t.Fatal("Postfix still listens after Stop")
	}
}
