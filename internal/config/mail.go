package config

import (
	"fmt"
	"net"
	"strconv"
	"time"
)

// POP3 configures the POP3 front end; the keys mean what imap's do.
type POP3 struct {
	Listen           string        `yaml:"listen"`       // "off" disables it
	POP3SListen      string        `yaml:"pop3s_listen"` // needs tls
	AllowPlainRemote bool          `yaml:"allow_plain_remote"`
	PreLoginTimeout  Duration      `yaml:"prelogin_timeout"`
	MaxConns         int           `yaml:"max_conns"`
	LoginFormat      string        `yaml:"login_format"`
	TrustedNetworks  []string      `yaml:"trusted_networks"` // fronts whose XCLIENT names the real client
	Upstream         *MailUpstream `yaml:"upstream"`
}

// Submission configures the SMTP submission front end; the keys mean
// what imap's do.
type Submission struct {
	Listen            string        `yaml:"listen"`             // "off" disables it
	SubmissionsListen string        `yaml:"submissions_listen"` // implicit TLS (port 465 style); needs tls
	AllowPlainRemote  bool          `yaml:"allow_plain_remote"`
	PreLoginTimeout   Duration      `yaml:"prelogin_timeout"`
	MaxConns          int           `yaml:"max_conns"`
	LoginFormat       string        `yaml:"login_format"`
	TrustedNetworks   []string      `yaml:"trusted_networks"` // fronts whose XCLIENT names the real client
	Upstream          *MailUpstream `yaml:"upstream"`
}

// MailUpstream is the mail server behind the POP3 or the submission
// front end.
type MailUpstream struct {
	// Host is the mail server, or "demo" for the embedded in-memory one.
	Host   string `yaml:"host"`
	Port   int    `yaml:"port"`
	TLS    string `yaml:"tls"` // none, starttls or implicit
	CAFile string `yaml:"ca_file"`
}

func defaultPOP3() POP3 {
	return POP3{Listen: "127.0.0.1:1110", PreLoginTimeout: Duration(60 * time.Second), MaxConns: 4096, LoginFormat: "%Ln"}
}

func defaultSubmission() Submission {
	return Submission{Listen: "127.0.0.1:1587", PreLoginTimeout: Duration(60 * time.Second), MaxConns: 4096, LoginFormat: "%Ln"}
}

// mailSection is what Validate checks of the pop3 and submission
// sections, alike.
type mailSection struct {
	key                     string // "pop3"
	listen, implicit        string
	implicitKey             string // "pop3s_listen"
	timeout                 Duration
	maxConns                int
	loginFormat             string
	trusted                 []string
	up                      *MailUpstream
	plainPort, implicitPort int // the upstream's default ports
	starttlsPort            int // 0: plainPort
}

// validateMail checks one mail section with Validate's checkers.
func (c *Config) validateMail(s mailSection, bad func(key, format string, args ...any),
	addr func(key, v string, offOK bool), tlsAddr func(key, v string), positive func(key string, d Duration),
	oneOf func(key, v string, allowed ...string), prefixes func(key string, list []string), fileExists func(key, path string)) {
	k := s.key + "."
	addr(k+"listen", s.listen, true)
	tlsAddr(k+s.implicitKey, s.implicit)
	positive(k+"prelogin_timeout", s.timeout)
	if s.maxConns < 1 {
		bad(k+"max_conns", "must be at least 1")
	}
	oneOf(k+"login_format", s.loginFormat, "%Ln", "%n", "%Lu", "%u")
	prefixes(k+"trusted_networks", s.trusted)
	u := s.up
	if u == nil || u.Host == "demo" {
		return
	}
	if u.Host == "" {
		bad(k+"upstream.host", "empty; give the mail server's host name, or demo")
	}
	if u.TLS == "" {
		u.TLS = "none"
	}
	oneOf(k+"upstream.tls", u.TLS, "none", "starttls", "implicit")
	if u.Port == 0 {
		u.Port = s.plainPort
		if u.TLS == "implicit" {
			u.Port = s.implicitPort
		}
	}
	if u.Port < 1 || u.Port > 65535 {
		bad(k+"upstream.port", "%d is out of range 1 to 65535", u.Port)
	}
	fileExists(k+"upstream.ca_file", u.CAFile)
}

// SetMailUpstream sets a pop3 or submission upstream from its flag
// (flag names it in errors): HOST:PORT, or demo.
func SetMailUpstream(dst **MailUpstream, flag, v string) error {
	if v == "demo" {
		*dst = &MailUpstream{Host: "demo"}
		return nil
	}
	host, port, err := net.SplitHostPort(v)
	if err != nil {
		return &KeyError{Key: flag, Reason: fmt.Sprintf("%q is not HOST:PORT or demo", v)}
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return &KeyError{Key: flag, Reason: fmt.Sprintf("%q: port is not a number", v)}
	}
	tlsMode := "none"
	if *dst != nil && (*dst).TLS != "" {
		tlsMode = (*dst).TLS
	}
	*dst = &MailUpstream{Host: host, Port: p, TLS: tlsMode}
	return nil
}
