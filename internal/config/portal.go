package config

import (
	"net"
)

// Portal configures the self-service web pages.
type Portal struct {
	// Listen serves the portal over HTTP (HTTPS with tls.cert_file);
	// "off" disables it. Plain HTTP only on loopback, or behind
	// TrustedProxies.
	Listen string `yaml:"listen"`
	// TrustedProxies are the reverse proxies (addresses or networks)
	// whose X-Forwarded-For and X-Forwarded-Proto the portal believes.
	TrustedProxies []string `yaml:"trusted_proxies"`
	// Password is where the portal checks an account's password: local
	// (the store's hash), ldap (a bind to ldap.upstream), imap (a login
	// to imap.upstream), or auto: ldap when ldap.upstream is set, else
	// local.
	Password string `yaml:"password"`
	// Servers are the names people type into their devices, for the
	// how-to: host:port for each protocol. Empty: the front end's listen
	// address.
	Servers PortalServers `yaml:"servers"`
}

// PortalServers are the public server names of the how-to.
type PortalServers struct {
	LDAP string `yaml:"ldap"`
	IMAP string `yaml:"imap"`
	POP3 string `yaml:"pop3"`
	SMTP string `yaml:"smtp"`
}

func defaultPortal() Portal { return Portal{Listen: "127.0.0.1:9387", Password: "auto"} }

// validatePortal checks the portal section with Validate's checkers.
func (c *Config) validatePortal(bad func(key, format string, args ...any), addr func(key, v string, offOK bool),
	oneOf func(key, v string, allowed ...string), prefixes func(key string, list []string)) {
	p := &c.Portal
	addr("portal.listen", p.Listen, true)
	prefixes("portal.trusted_proxies", p.TrustedProxies)
	if p.Password == "" {
		p.Password = "auto"
	}
	oneOf("portal.password", p.Password, "auto", "local", "ldap", "imap")
	switch p.Password {
	case "auto":
		p.Password = "local"
		if c.LDAP.Upstream != nil {
			p.Password = "ldap"
		}
	case "ldap":
		if c.LDAP.Upstream == nil {
			bad("portal.password", "ldap needs ldap.upstream")
		}
	case "imap":
		if u := c.IMAP.Upstream; u == nil || u.MasterUser != "" {
			bad("portal.password", "imap needs imap.upstream without master_user (a master user cannot check a person's password)")
		}
	}
	if p.Listen != "" && p.Listen != "off" && !c.TLS.Enabled() && len(p.TrustedProxies) == 0 {
		if host, _, err := net.SplitHostPort(p.Listen); err == nil && !loopbackHost(host) {
			bad("portal.listen", "%q is not loopback: passwords would cross the network in clear; set tls.cert_file, or portal.trusted_proxies for a reverse proxy that does TLS", p.Listen)
		}
	}
	for key, v := range map[string]string{"portal.servers.ldap": p.Servers.LDAP, "portal.servers.imap": p.Servers.IMAP,
		"portal.servers.pop3": p.Servers.POP3, "portal.servers.smtp": p.Servers.SMTP} {
		if v == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(v); err != nil {
			bad(key, "%q is not host:port such as mail.example.org:993", v)
		}
	}
}

func loopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
