package config

import (
	"strings"
	"testing"
)

// TestPortal: plain HTTP from afar is refused at start-up, naming the
// key; TLS or a trusted proxy allows it; portal.password resolves auto
// and refuses a backend that is not configured; bad keys are named.
func TestPortal(t *testing.T) {
	c := Default()
	if err := c.Validate(); err != nil || c.Portal.Password != "local" {
		t.Fatalf("defaults: %v, password %q", err, c.Portal.Password)
	}
	for _, tc := range []struct {
		mod  func(*Config)
		want string // "" is valid
	}{
		{func(c *Config) { c.Portal.Listen = "0.0.0.0:9387" }, "portal.listen"},
		{func(c *Config) { c.Portal.Listen = "192.0.2.7:9387" }, "portal.listen"},
		{func(c *Config) { c.Portal.Listen = "0.0.0.0:9387"; c.Portal.TrustedProxies = []string{"10.0.0.1"} }, ""},
		{func(c *Config) { c.Portal.Listen = "localhost:9387" }, ""},
		{func(c *Config) { c.Portal.Listen = "off" }, ""},
		{func(c *Config) { c.Portal.TrustedProxies = []string{"not-a-net"} }, "portal.trusted_proxies[0]"},
		{func(c *Config) { c.Portal.Password = "ldap" }, "portal.password: ldap needs ldap.upstream"},
		{func(c *Config) { c.Portal.Password = "kerberos" }, "portal.password"},
		{func(c *Config) { c.Portal.Password = "imap" }, "portal.password: imap needs imap.upstream"},
		{func(c *Config) { c.Portal.Servers.IMAP = "mail.example.org" }, "portal.servers.imap"},
		{func(c *Config) { c.Portal.Servers.IMAP = "mail.example.org:993" }, ""},
	} {
		c := Default()
		tc.mod(c)
		err := c.Validate()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%+v: %v", c.Portal, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%+v: %v; want an error naming %s", c.Portal, err, tc.want)
		}
	}
	c = Default()
	c.LDAP.Upstream = &LDAPUpstream{URLs: []string{"ldap://127.0.0.1:389"}}
	if err := c.Validate(); err != nil || c.Portal.Password != "ldap" {
		t.Fatalf("auto with ldap.upstream: %v, %q", err, c.Portal.Password)
	}
}
