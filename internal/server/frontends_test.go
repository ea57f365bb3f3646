package server

import (
	"io"
	"net"
	"path/filepath"
	"testing"

	"github.com/stepgate/stepgate/internal/config"
	"github.com/stepgate/stepgate/internal/datadir"
)

// TestFrontEndOffDoesNotSkipTheRest: an IMAP front end left off for want
// of a mail server, built before LDAP, leaves LDAP listening (the old
// start-up returned early there and skipped every front end after IMAP).
func TestFrontEndOffDoesNotSkipTheRest(t *testing.T) {
	t.Setenv(datadir.KeyFileEnv, "")
	saved := frontEndBuilders
	frontEndBuilders = []func(frontEndDeps) (frontEnd, error){buildIMAP, buildLDAP}
	t.Cleanup(func() { frontEndBuilders = saved })

	dir := datadir.New(filepath.Join(t.TempDir(), "data"))
	_, addrs, _ := startWith(t, dir, false, io.Discard, func(c *config.Config) {
		c.IMAP.Listen, c.IMAP.Upstream = "127.0.0.1:0", nil
		c.LDAP.Listen = "127.0.0.1:0"
	})
	if addrs.IMAP != "" {
		t.Errorf("IMAP listens on %s without a mail server", addrs.IMAP)
	}
	if addrs.LDAP == "" {
		t.Fatal("LDAP front end not started after the IMAP one stayed off")
	}
	c, err := net.Dial("tcp", addrs.LDAP)
	if err != nil {
		t.Fatalf("LDAP front end not listening: %v", err)
	}
	c.Close()
}
