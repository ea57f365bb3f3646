package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func write(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "stepgate.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDefaultsValidate(t *testing.T) {
	if err := Default().Validate(); err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
}

// TestFullExample: the documented example holds every key and loads.
func TestFullExample(t *testing.T) {
	c, err := Load("../../testdata/config/full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	d := Default()
	d.file = c.file
	if c.Sessions.Absolute.D() != 7*24*time.Hour || c.LDAP.MaxMessageBytes != 1<<20 {
		t.Fatalf("example differs from the defaults: %+v", c)
	}
}

func TestLoad(t *testing.T) {
	p := write(t, `
two_step:
  policy: allow
  separator: ";"
sessions:
  idle: 10m
ldap:
  upstream:
    urls: [ldap://127.0.0.1:3890, "ldaps://dir.example.org"]
    passthrough_dns: ["cn=app,dc=example,dc=org"]
imap:
  upstream:
    host: 127.0.0.1
    port: 1430
`)
	c, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.TwoStep.Policy != "allow" || c.Rule().Separator != ";" || c.Sessions.Idle.D() != 10*time.Minute {
		t.Fatalf("values not read: %+v", c.TwoStep)
	}
	if c.Sessions.Absolute.D() != 7*24*time.Hour || c.LDAP.Listen != "127.0.0.1:3389" {
		t.Fatal("defaults lost for keys the file does not give")
	}
	if u := c.LDAP.Upstream; len(u.URLs) != 2 || u.UserAttribute != "uid" || u.Timeout.D() != 10*time.Second {
		t.Fatalf("upstream = %+v", u)
	}
	if l := c.Limits; l.MaxConnsPerAddress != 64 || l.HashMemory != 256<<20 || l.HashWait.D() != 2*time.Second {
		t.Fatalf("limits defaults = %+v", l)
	}
	if len(c.Lockout.Applications) != 0 || len(c.IMAP.TrustedNetworks) != 0 {
		t.Fatalf("applications %v and trusted networks %v: none by default", c.Lockout.Applications, c.IMAP.TrustedNetworks)
	}
	if c.IMAP.Upstream.TLS != "none" || c.IMAP.Upstream.Port != 1430 {
		t.Fatalf("imap upstream = %+v", c.IMAP.Upstream)
	}
}

func TestErrorsNameFileKeyAndReason(t *testing.T) {
	tests := []struct {
		body string
		want []string
	}{
		{"ldap:\n  listn: 127.0.0.1:1\n", []string{":2:", "ldap.listn", "unknown key"}},
		{"bogus: 1\n", []string{":1:", "bogus", "unknown key"}},
		{"sessions:\n  idle: forever\n", []string{":2:", "sessions.idle", "not a duration"}},
		{"lockout:\n  max_failures: many\n", []string{"lockout.max_failures", "many"}},
		{"two_step:\n  policy: maybe\n", []string{"two_step.policy", `"maybe" is not one of deny, allow`}},
		{"two_step:\n  digits: 9\n", []string{"two_step.digits", "out of range"}},
		{"two_step:\n  separator: x\n", []string{"two_step.separator"}},
		{"ldap:\n  listen: nowhere\n", []string{"ldap.listen", "not host:port"}},
		{"ldap:\n  upstream:\n    urls: [http://x]\n", []string{"ldap.upstream.urls[0]", "not an ldap://"}},
		{"ldap:\n  ldaps_listen: 127.0.0.1:636\n", []string{"ldap.ldaps_listen", "needs tls"}},
		{"imap:\n  upstream:\n    host: mail\n    tls: ssl\n", []string{"imap.upstream.tls"}},
		{"pop3:\n  upstream:\n    host: mail\n    tls: ssl\n", []string{"pop3.upstream.tls"}},
		{"pop3:\n  pop3s_listen: 127.0.0.1:995\n", []string{"pop3.pop3s_listen", "needs tls"}},
		{"submission:\n  upstream:\n    port: 587\n", []string{"submission.upstream.host", "empty"}},
		{"submission:\n  login_format: \"%d\"\n", []string{"submission.login_format"}},
		{"submission:\n  trusted_networks: [nowhere]\n", []string{"submission.trusted_networks"}},
		{"tls:\n  cert_file: /nonexistent.pem\n  key_file: /nonexistent.key\n", []string{"tls.cert_file", "no such file"}},
		{"ldap: [1, 2]\n", []string{"ldap", "mapping"}},
		{"sessions:\n  idle: 1m\n  idle: 2m\n", []string{"sessions.idle", "twice"}},
		{"a: b\n---\nc: d\n", []string{"more than one YAML document"}},
		{"ldap:\n  base_dn: example\n", []string{"ldap.base_dn"}},
		{"limits:\n  max_conns_per_address: 0\n", []string{"limits.max_conns_per_address", "at least 1"}},
		{"limits:\n  address_exceptions:\n    - {addresses: [10.0.0.0/33], max_conns_per_address: 5}\n", []string{"limits.address_exceptions[0].addresses", "10.0.0.0/33"}},
		{"limits:\n  address_exceptions:\n    - {addresses: [], max_conns_per_address: 0}\n", []string{"limits.address_exceptions[0].addresses", "limits.address_exceptions[0].max_conns_per_address"}},
		{"lockout:\n  applications: [127.0.0.1, 10.0.0.0/8, apache.example.org]\n", []string{"lockout.applications[2]", "apache.example.org", "not an address or a network"}},
		{"imap:\n  trusted_networks: [192.0.2.0/40]\n", []string{"imap.trusted_networks[0]", "192.0.2.0/40"}},
		{"limits:\n  password_hashes: -1\n", []string{"limits.password_hashes"}},
		{"limits:\n  hash_memory: 1MiB\n", []string{"limits.hash_memory", "19MiB"}},
		{"limits:\n  hash_wait: 0s\n", []string{"limits.hash_wait", "positive"}},
		{"two_step:\n  require_groups: [cn=2sv,ou=groups,dc=example,dc=org]\n", []string{"two_step.require_groups", "needs ldap.upstream"}},
		{"two_step:\n  require_groups: [2sv]\nldap:\n  upstream:\n    urls: [ldap://x]\n", []string{"two_step.require_groups[0]", "not a group DN"}},
		{"two_step:\n  exempt_networks: [printers]\n", []string{"two_step.exempt_networks[0]", "printers"}},
		{"ldap:\n  upstream:\n    urls: [ldap://x]\n    lookup_dn: cn=stepgate,dc=example,dc=org\n", []string{"ldap.upstream.lookup_dn", "go together"}},
		{"ldap:\n  upstream:\n    urls: [ldap://x]\n    lookup_dn: cn=s,dc=x\n    lookup_password_file: /nonexistent\n", []string{"ldap.upstream.lookup_password_file", "no such file"}},
		{"ldap:\n  upstream:\n    urls: [ldap://x]\n    groups: nested\n", []string{"ldap.upstream.groups", "nested"}},
	}
	for _, tt := range tests {
		p := write(t, tt.body)
		c, err := Load(p)
		if err == nil {
			err = c.Validate()
		}
		if err == nil {
			t.Errorf("%q: no error", tt.body)
			continue
		}
		msg := err.Error()
		if !strings.Contains(msg, p) {
			t.Errorf("%q: error %q does not name the file", tt.body, msg)
		}
		for _, w := range tt.want {
			if !strings.Contains(msg, w) {
				t.Errorf("%q: error %q lacks %q", tt.body, msg, w)
			}
		}
	}
}

func TestSetIMAPUpstream(t *testing.T) {
	c := Default()
	if err := c.SetIMAPUpstream("demo"); err != nil || c.IMAP.Upstream.Host != "demo" {
		t.Fatal(err)
	}
	if err := c.SetIMAPUpstream("127.0.0.1:143"); err != nil || c.IMAP.Upstream.Port != 143 {
		t.Fatal(err)
	}
	if err := c.SetIMAPUpstream("mail"); err == nil || !strings.Contains(err.Error(), "--imap-upstream") {
		t.Fatalf("bad flag value: %v", err)
	}
}

func TestDeliveryErrorsNameTheirKeys(t *testing.T) {
	p := write(t, `
delivery:
  codes:
    lifetime: 5s
  sms:
    webhook:
      url: ftp://sms.example.org/
      key_file: /nonexistent
`)
	c, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	err = c.Validate()
	for _, want := range []string{p + ": delivery.codes.lifetime: 5s is out of range", p + ": delivery.sms.webhook.url:", p + ": delivery.sms.webhook.key_file:"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v lacks %q", err, want)
		}
	}
	if _, err := Load(write(t, "delivery:\n  codes:\n    lifetme: 5m\n")); err == nil || !strings.Contains(err.Error(), "delivery.codes.lifetme: unknown key") {
		t.Errorf("unknown delivery key: %v", err)
	}
}

// TestApplicationsAndTrustedNetworks: both lists are read as addresses
// and networks.
func TestApplicationsAndTrustedNetworks(t *testing.T) {
	c, err := Load(write(t, "lockout:\n  applications: [127.0.0.1, \"10.0.0.0/24\", \"2001:db8::/64\"]\nimap:\n  trusted_networks: [192.0.2.7]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	apps, err := Prefixes(c.Lockout.Applications)
	if err != nil || len(apps) != 3 || apps[0].String() != "127.0.0.1/32" || apps[2].String() != "2001:db8::/64" {
		t.Fatalf("applications = %v, %v", apps, err)
	}
	if got := c.IMAP.TrustedNetworks; len(got) != 1 || got[0] != "192.0.2.7" {
		t.Fatalf("trusted networks = %v", got)
	}
}

// TestMailUpstreamPorts: the pop3 and submission upstreams default to
// their protocol's port, the implicit-TLS one with tls: implicit.
func TestMailUpstreamPorts(t *testing.T) {
	c := Default()
	c.POP3.Upstream = &MailUpstream{Host: "mail", TLS: "implicit"}
	c.Submission.Upstream = &MailUpstream{Host: "mail"}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.POP3.Upstream.Port != 995 || c.Submission.Upstream.Port != 587 || c.Submission.Upstream.TLS != "none" {
		t.Fatalf("pop3 %+v, submission %+v", c.POP3.Upstream, c.Submission.Upstream)
	}
	if err := SetMailUpstream(&c.POP3.Upstream, "--pop3-upstream", "mail:1110"); err != nil || c.POP3.Upstream.Port != 1110 || c.POP3.Upstream.TLS != "implicit" {
		t.Fatalf("--pop3-upstream: %v %+v", err, c.POP3.Upstream)
	}
	if err := SetMailUpstream(&c.POP3.Upstream, "--pop3-upstream", "mail"); err == nil || !strings.Contains(err.Error(), "--pop3-upstream") {
		t.Fatalf("--pop3-upstream mail: %v", err)
	}
}

// TestStore: sqlite is the default; postgres needs a DSN that parses,
// from the file or STEPGATE_STORE_DSN, and its password in one place.
func TestStore(t *testing.T) {
	t.Setenv(StoreDSNEnv, "")
	pwFile := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(pwFile, []byte("s3cret\n"), 0o600)
	for _, c := range []struct {
		yaml, env string
		bad       []string // key: reason fragments; none means valid
	}{
		{yaml: "store:\n  driver: sqlite\n"},
		{yaml: "store:\n  driver: postgres\n  dsn: postgres://stepgate@db.example.org/stepgate\n  password_file: " + pwFile + "\n"},
		{yaml: "store:\n  driver: postgres\n  dsn: host=db.example.org user=stepgate dbname=stepgate\n"},
		{yaml: "store:\n  driver: postgres\n", env: "postgres://stepgate@db.example.org/stepgate"},
		{yaml: "store:\n  driver: mysql\n", bad: []string{"store.driver", `"mysql" is not one of sqlite, postgres`}},
		{yaml: "store:\n  driver: postgres\n", bad: []string{"store.dsn", "empty"}},
		{yaml: "store:\n  dsn: postgres://db.example.org/x\n", bad: []string{"store.dsn", "store.driver is sqlite"}},
		{yaml: "store:\n  driver: sqlite\n", env: "postgres://db.example.org/x", bad: []string{"store.dsn (from STEPGATE_STORE_DSN)", "store.driver is sqlite"}},
		{yaml: "store:\n  driver: postgres\n  dsn: 'postgres://db.example.org:notaport/x'\n", bad: []string{"store.dsn", "cannot parse"}},
		{yaml: "store:\n  driver: postgres\n  dsn: postgres://u:pw@db.example.org/x\n  password_file: " + pwFile + "\n",
			bad: []string{"store.dsn", "keep the password in the file only"}},
		{yaml: "store:\n  driver: postgres\n  dsn: postgres://u@db.example.org/x\n  password_file: /nonexistent/pw\n",
			bad: []string{"store.password_file", "no such file"}},
	} {
		t.Setenv(StoreDSNEnv, c.env)
		p := write(t, c.yaml)
		cfg, err := Load(p)
		if err != nil {
			t.Fatal(err)
		}
		err = cfg.Validate()
		storeErr := cfg.ValidateStore()
		if len(c.bad) == 0 {
			if err != nil || storeErr != nil {
				t.Errorf("%q (env %q): %v / %v", c.yaml, c.env, err, storeErr)
			}
			continue
		}
		if err == nil || storeErr == nil {
			t.Errorf("%q (env %q) accepted", c.yaml, c.env)
			continue
		}
		msg := storeErr.Error()
		for _, want := range append(c.bad, p) {
			if !strings.Contains(msg, want) {
				t.Errorf("%q: error %q lacks %q", c.yaml, msg, want)
			}
		}
		if strings.Contains(msg, "pw@") {
			t.Errorf("error shows the password: %q", msg)
		}
	}
}
