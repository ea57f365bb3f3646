// Package config reads stepgate's YAML configuration, fills in defaults
// and validates every key, so that a bad file stops start-up with the
// file, the key and the reason.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"gopkg.in/yaml.v3"

	"github.com/stepgate/stepgate/internal/credential"
	"github.com/stepgate/stepgate/internal/delivery"
)

// Config is the whole configuration of `stepgate serve`.
type Config struct {
	Log      Log      `yaml:"log"`
	Audit    Audit    `yaml:"audit"`
	Store    Store    `yaml:"store"`
	TwoStep  TwoStep  `yaml:"two_step"`
	Sessions Sessions `yaml:"sessions"`
	Lockout  Lockout  `yaml:"lockout"`
	Admin    Admin    `yaml:"admin"`
	TLS      TLS      `yaml:"tls"`
	LDAP     LDAP     `yaml:"ldap"`
	IMAP     IMAP     `yaml:"imap"`
	// POP3 and Submission are the other mail front ends (mail.go).
	POP3       POP3       `yaml:"pop3"`
	Submission Submission `yaml:"submission"`
	// Portal is the self-service web pages (portal.go).
	Portal Portal `yaml:"portal"`
	Limits Limits `yaml:"limits"`
	// Delivery sends sign-in codes and security alerts by e-mail and text
	// message, and sets the policy for delivery methods.
	Delivery delivery.Config `yaml:"delivery"`

	// file is where the config came from, for messages.
	file string
	// dsnFromEnv: store.dsn came from STEPGATE_STORE_DSN.
	dsnFromEnv bool
}

// Log configures operational logging.
type Log struct {
	Level  string `yaml:"level"`  // debug, info, warn, error
	Format string `yaml:"format"` // json or text
}

// Audit configures the audit trail (one JSON event per decision).
type Audit struct {
	// File receives audit events; "-" (the default) is standard error.
	File string `yaml:"file"`
}

// Store is where accounts, authenticators and the replay guard live.
type Store struct {
	// Driver is sqlite (the default: a file in the data folder) or
	// postgres (one database that several instances share).
	Driver string `yaml:"driver"`
	// DSN names the PostgreSQL database, as a URL
	// (postgres://stepgate@db.example.org/stepgate) or libpq key=value
	// pairs. STEPGATE_STORE_DSN, when set, takes its place.
	DSN string `yaml:"dsn"`
	// PasswordFile holds the database password, so that the DSN (and the
	// configuration) can be without it.
	PasswordFile string `yaml:"password_file"`
}

// StoreDSNEnv names the environment variable that gives store.dsn.
const StoreDSNEnv = "STEPGATE_STORE_DSN"

// TwoStep configures codes and the policy for accounts without them.
type TwoStep struct {
	Policy    string   `yaml:"policy"`    // deny or allow
	Digits    int      `yaml:"digits"`    // 6 to 8
	Separator string   `yaml:"separator"` // "" or one of ; , : | +
	Period    Duration `yaml:"period"`    // TOTP step, 30s
	Skew      int      `yaml:"skew"`      // steps either side, 1
	Issuer    string   `yaml:"issuer"`    // shown in authenticator apps
	// RequireGroups are directory group DNs (ldap.upstream) whose members
	// must use two-step: without it they are refused, whatever policy
	// and exempt_networks say.
	RequireGroups []string `yaml:"require_groups"`
	// ExemptNetworks are addresses or networks (a printer VLAN) from
	// which an account that has not enrolled and is in no required group
	// signs in with its password alone, audited as exempt_network.
	ExemptNetworks []string `yaml:"exempt_networks"`
}

// Sessions configures how long a proven string keeps working.
type Sessions struct {
	Idle     Duration `yaml:"idle"`
	Absolute Duration `yaml:"absolute"`
}

// Lockout configures failure budgets.
type Lockout struct {
	MaxFailures int      `yaml:"max_failures"`
	Window      Duration `yaml:"window"`
	Duration    Duration `yaml:"duration"`
	MaxDuration Duration `yaml:"max_duration"`
	// Applications are addresses or networks (192.0.2.7, 10.0.0.0/24) of
	// applications that sign in many users from one address (Apache
	// mod_authnz_ldap, webmail, a mail server's LDAP passdb): their
	// attempts count against each user's budget only, never the
	// address's, so that three users' wrong codes do not lock out the
	// fourth. They also get a per-address connection cap of
	// FrontMaxConnsPerAddress, unless limits.address_exceptions covers them.
	Applications []string `yaml:"applications"`
}

// FrontMaxConnsPerAddress is the per-address connection cap of an
// address in lockout.applications or imap.trusted_networks: one address
// that stands for many users needs the room of many users, and an
// administrator who names it a front has said so already.
const FrontMaxConnsPerAddress = 1024

// Admin configures the administrator's HTTP endpoint.
type Admin struct {
	// Listen serves /healthz, /readyz and /metrics; "off" disables it.
	Listen string `yaml:"listen"`
}

// TLS is the certificate the front ends present.
type TLS struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// Enabled reports whether a certificate is configured.
func (t TLS) Enabled() bool { return t.CertFile != "" }

// LDAP configures the LDAP front end.
type LDAP struct {
	Listen           string        `yaml:"listen"`       // "off" disables it
	LDAPSListen      string        `yaml:"ldaps_listen"` // needs tls
	BaseDN           string        `yaml:"base_dn"`
	AllowPlainRemote bool          `yaml:"allow_plain_remote"`
	AnonymousSearch  bool          `yaml:"anonymous_search"`
	ReadTimeout      Duration      `yaml:"read_timeout"`
	IdleTimeout      Duration      `yaml:"idle_timeout"`
	MaxMessageBytes  ByteSize      `yaml:"max_message_bytes"`
	MaxConns         int           `yaml:"max_conns"`
	Upstream         *LDAPUpstream `yaml:"upstream"`
}

// LDAPUpstream turns the LDAP front end into a proxy for a real directory.
type LDAPUpstream struct {
	URLs           []string `yaml:"urls"`
	StartTLS       bool     `yaml:"start_tls"`
	CAFile         string   `yaml:"ca_file"`
	PassthroughDNs []string `yaml:"passthrough_dns"`
	UserAttribute  string   `yaml:"user_attribute"`
	Timeout        Duration `yaml:"timeout"`
	// IDAttribute holds an entry's stable identity, which keeps a
	// person's authenticators across a rename: entryUUID (OpenLDAP, the
	// default), objectGUID (Active Directory).
	IDAttribute string `yaml:"id_attribute"`
	// LookupDN and LookupPasswordFile are stepgate's own read-only
	// account for finding entries and groups, for directories that
	// refuse anonymous reads; unset, lookups are anonymous.
	LookupDN           string `yaml:"lookup_dn"`
	LookupPasswordFile string `yaml:"lookup_password_file"`
	// Groups says how group membership is read: memberof (the default)
	// or search (groupOfNames, groupOfUniqueNames, posixGroup entries
	// under GroupBaseDN, base_dn when empty).
	Groups      string `yaml:"groups"`
	GroupBaseDN string `yaml:"group_base_dn"`
	// LookupCache is how long a lookup's answer is remembered.
	LookupCache Duration `yaml:"lookup_cache"`
}

// IMAP configures the IMAP front end.
type IMAP struct {
	Listen           string   `yaml:"listen"`       // "off" disables it
	IMAPSListen      string   `yaml:"imaps_listen"` // needs tls
	AllowPlainRemote bool     `yaml:"allow_plain_remote"`
	PreLoginTimeout  Duration `yaml:"prelogin_timeout"`
	MaxConns         int      `yaml:"max_conns"`
	// LoginFormat maps a login name to a stepgate account the way the mail
	// server maps it to a mailbox (Dovecot's auth_username_format): %Ln
	// (the default) and %n take the part before '@', %Lu and %u the whole
	// name. It must match the mail server's, or a form the mail server
	// takes for an enrolled user could reach it without a code.
	LoginFormat string `yaml:"login_format"`
	// TrustedNetworks are addresses or networks of fronts (webmail, a
	// proxy) whose ID ("x-originating-ip" ...) before login names the
	// real client, as Dovecot's login_trusted_networks: that address then
	// takes the per-address budget, the audit event and the ID stepgate
	// sends upstream. From any other address the ID is ignored.
	TrustedNetworks []string      `yaml:"trusted_networks"`
	Upstream        *IMAPUpstream `yaml:"upstream"`
}

// IMAPUpstream is the mail server behind the IMAP front end.
type IMAPUpstream struct {
	// Host is the mail server, or "demo" for the embedded in-memory one.
	Host   string `yaml:"host"`
	Port   int    `yaml:"port"`
	TLS    string `yaml:"tls"` // none, starttls or implicit
	CAFile string `yaml:"ca_file"`
	// MasterUser logs in as every user (Dovecot user*master) when
	// passwords are checked by stepgate itself.
	MasterUser         string `yaml:"master_user"`
	MasterPasswordFile string `yaml:"master_password_file"`
}

// Limits bound what clients that have not signed in can make stepgate
// spend: connections per address and password hashes at once.
type Limits struct {
	// MaxConnsPerAddress caps the connections open from one client
	// address, every front end together (IPv6: per /64).
	MaxConnsPerAddress int `yaml:"max_conns_per_address"`
	// AddressExceptions give addresses or networks their own cap.
	AddressExceptions []AddressException `yaml:"address_exceptions"`
	// PasswordHashes is how many password hashes may run at once; 0
	// derives it from the CPU count and HashMemory.
	PasswordHashes int `yaml:"password_hashes"`
	// HashMemory is the memory budget for the hashes running at once.
	HashMemory ByteSize `yaml:"hash_memory"`
	// HashWait is how long a sign-in queues for a hash before it is
	// answered busy.
	HashWait Duration `yaml:"hash_wait"`
}

// AddressException is a per-address cap for some addresses: webmail or a
// proxy that brings many users through one address.
type AddressException struct {
	Addresses          []string `yaml:"addresses"` // 192.0.2.7 or 10.0.0.0/24
	MaxConnsPerAddress int      `yaml:"max_conns_per_address"`
}

// Prefixes parses the exception's addresses; a plain address is a
// prefix of its full length.
func (e AddressException) Prefixes() ([]netip.Prefix, error) { return Prefixes(e.Addresses) }

// Prefixes parses addresses and networks (192.0.2.7, 10.0.0.0/24,
// 2001:db8::/64); a plain address is a prefix of its full length.
func Prefixes(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range list {
		if strings.Contains(s, "/") {
			p, err := netip.ParsePrefix(s)
			if err != nil {
				return nil, fmt.Errorf("%q is not an address or a network such as 10.0.0.0/24", s)
			}
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("%q is not an address or a network such as 10.0.0.0/24", s)
		}
		a = a.Unmap()
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

// Default returns the embedded default configuration.
func Default() *Config {
	return &Config{
		Log:      Log{Level: "info", Format: "json"},
		Audit:    Audit{File: "-"},
		Store:    Store{Driver: "sqlite"},
		TwoStep:  TwoStep{Policy: "deny", Digits: 6, Period: Duration(30 * time.Second), Skew: 1, Issuer: "stepgate"},
		Sessions: Sessions{Idle: Duration(30 * time.Minute), Absolute: Duration(7 * 24 * time.Hour)},
		Lockout: Lockout{MaxFailures: 5, Window: Duration(5 * time.Minute), Duration: Duration(5 * time.Minute),
			MaxDuration: Duration(time.Hour)},
		Admin: Admin{Listen: "127.0.0.1:9386"},
		LDAP: LDAP{Listen: "127.0.0.1:3389", BaseDN: "dc=example,dc=org", ReadTimeout: Duration(10 * time.Second),
			IdleTimeout: Duration(5 * time.Minute), MaxMessageBytes: 1 << 20, MaxConns: 4096},
		IMAP: IMAP{Listen: "127.0.0.1:1143", PreLoginTimeout: Duration(60 * time.Second), MaxConns: 4096,
			LoginFormat: "%Ln"},
		POP3:       defaultPOP3(),
		Submission: defaultSubmission(),
		Portal:     defaultPortal(),
		Limits:     Limits{MaxConnsPerAddress: 64, HashMemory: 256 << 20, HashWait: Duration(2 * time.Second)},
		Delivery:   delivery.DefaultConfig(),
	}
}

// Load reads file over the defaults. An empty file name gives the
// defaults alone. The result is not yet validated: flags may still
// override it; call Validate after.
func Load(file string) (*Config, error) {
	c := Default()
	if file != "" {
		c.file = file
		raw, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("config %s: %w", file, err)
		}
		if err := c.parse(file, raw); err != nil {
			return nil, err
		}
	}
	// The environment beats the file: a container's secret store sets it.
	if dsn := os.Getenv(StoreDSNEnv); dsn != "" {
		c.Store.DSN = dsn
		c.dsnFromEnv = true
	}
	return c, nil
}

func (c *Config) parse(file string, raw []byte) error {
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil
	}
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&doc); err != nil {
		return fmt.Errorf("%s: not valid YAML: %w", file, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return fmt.Errorf("%s: more than one YAML document; stepgate reads one", file)
	}
	return decodeStrict(file, &doc, c)
}

// File is the file the configuration was read from ("" for the defaults).
func (c *Config) File() string { return c.file }

// Rule is the split rule the configuration asks for.
func (c *Config) Rule() credential.Rule {
	return credential.Rule{Digits: c.TwoStep.Digits, Separator: c.TwoStep.Separator}
}

// Validate checks every value and returns all problems found, each naming
// its key.
func (c *Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, &KeyError{File: c.file, Key: key, Reason: fmt.Sprintf(format, args...)})
	}
	oneOf := func(key, v string, allowed ...string) {
		for _, a := range allowed {
			if v == a {
				return
			}
		}
		bad(key, "%q is not one of %s", v, strings.Join(allowed, ", "))
	}
	positive := func(key string, d Duration) {
		if d <= 0 {
			bad(key, "must be a positive duration such as 30s, 5m or 1h")
		}
	}
	addr := func(key, v string, offOK bool) {
		if v == "" || (offOK && v == "off") {
			return
		}
		host, port, err := net.SplitHostPort(v)
		if err != nil {
			bad(key, "%q is not host:port (%v)", v, err)
			return
		}
		if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
			bad(key, "%q: port must be a number from 0 to 65535", v)
		}
		if host == "" {
			bad(key, "%q: give the address to listen on, such as 127.0.0.1:%s (an empty host listens everywhere)", v, port)
		}
	}
	// tlsAddr is a front end's implicit-TLS listener. Whether it has a
	// certificate is checked here only: the protocols take their
	// options as checked.
	tlsAddr := func(key, v string) {
		addr(key, v, false)
		if v != "" && !c.TLS.Enabled() {
			bad(key, "needs tls.cert_file and tls.key_file")
		}
	}
	fileExists := func(key, path string) {
		if path == "" {
			return
		}
		if _, err := os.Stat(path); err != nil {
			bad(key, "%v", err)
		}
	}

	oneOf("log.level", c.Log.Level, "debug", "info", "warn", "error")
	oneOf("log.format", c.Log.Format, "json", "text")
	if c.Audit.File == "" {
		bad("audit.file", "empty; use - for standard error or a file path")
	}
	errs = append(errs, c.storeErrors()...)
	oneOf("two_step.policy", c.TwoStep.Policy, "deny", "allow")
	if err := c.Rule().Validate(); err != nil {
		key := "two_step.digits"
		if c.TwoStep.Digits >= 6 && c.TwoStep.Digits <= 8 {
			key = "two_step.separator"
		}
		bad(key, "%v", err)
	}
	if c.TwoStep.Period.D() < time.Second || c.TwoStep.Period.D()%time.Second != 0 {
		bad("two_step.period", "must be a whole number of seconds, at least 1s (30s is what apps use)")
	}
	if c.TwoStep.Skew < 0 || c.TwoStep.Skew > 10 {
		bad("two_step.skew", "%d is out of range 0 to 10", c.TwoStep.Skew)
	}
	if c.TwoStep.Issuer == "" || strings.Contains(c.TwoStep.Issuer, ":") {
		bad("two_step.issuer", "must be a non-empty name without ':'")
	}
	positive("sessions.idle", c.Sessions.Idle)
	positive("sessions.absolute", c.Sessions.Absolute)
	if c.Sessions.Absolute > 0 && c.Sessions.Idle > c.Sessions.Absolute {
		bad("sessions.idle", "longer than sessions.absolute")
	}
	if c.Lockout.MaxFailures < 1 {
		bad("lockout.max_failures", "must be at least 1")
	}
	positive("lockout.window", c.Lockout.Window)
	positive("lockout.duration", c.Lockout.Duration)
	if c.Lockout.MaxDuration < c.Lockout.Duration {
		bad("lockout.max_duration", "shorter than lockout.duration")
	}
	prefixes := func(key string, list []string) {
		for i, s := range list {
			if _, err := Prefixes([]string{s}); err != nil {
				bad(fmt.Sprintf("%s[%d]", key, i), "%v", err)
			}
		}
	}
	prefixes("lockout.applications", c.Lockout.Applications)
	addr("admin.listen", c.Admin.Listen, true)
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		bad("tls", "cert_file and key_file go together")
	}
	fileExists("tls.cert_file", c.TLS.CertFile)
	fileExists("tls.key_file", c.TLS.KeyFile)

	addr("ldap.listen", c.LDAP.Listen, true)
	tlsAddr("ldap.ldaps_listen", c.LDAP.LDAPSListen)
	if !validDN(c.LDAP.BaseDN) {
		bad("ldap.base_dn", "%q is not a DN such as dc=example,dc=org", c.LDAP.BaseDN)
	}
	positive("ldap.read_timeout", c.LDAP.ReadTimeout)
	positive("ldap.idle_timeout", c.LDAP.IdleTimeout)
	if c.LDAP.MaxMessageBytes < 1024 {
		bad("ldap.max_message_bytes", "must be at least 1KiB")
	}
	if c.LDAP.MaxConns < 1 {
		bad("ldap.max_conns", "must be at least 1")
	}
	if u := c.LDAP.Upstream; u != nil {
		if len(u.URLs) == 0 {
			bad("ldap.upstream.urls", "give at least one ldap:// or ldaps:// URL")
		}
		for i, s := range u.URLs {
			p, err := url.Parse(s)
			if err != nil || (p.Scheme != "ldap" && p.Scheme != "ldaps") || p.Host == "" {
				bad(fmt.Sprintf("ldap.upstream.urls[%d]", i), "%q is not an ldap:// or ldaps:// URL with a host", s)
			}
		}
		fileExists("ldap.upstream.ca_file", u.CAFile)
		for i, dn := range u.PassthroughDNs {
			if !validDN(dn) {
				bad(fmt.Sprintf("ldap.upstream.passthrough_dns[%d]", i), "%q is not a DN", dn)
			}
		}
		// The proxy's defaults are set here only: protocols/ldap takes
		// them as given.
		if u.UserAttribute == "" {
			u.UserAttribute = "uid"
		}
		if u.Timeout == 0 {
			u.Timeout = Duration(10 * time.Second)
		}
		positive("ldap.upstream.timeout", u.Timeout)
		if u.IDAttribute == "" {
			u.IDAttribute = "entryUUID"
		}
		if u.Groups == "" {
			u.Groups = "memberof"
		}
		oneOf("ldap.upstream.groups", u.Groups, "memberof", "search")
		if u.GroupBaseDN != "" && !validDN(u.GroupBaseDN) {
			bad("ldap.upstream.group_base_dn", "%q is not a DN", u.GroupBaseDN)
		}
		if u.LookupCache == 0 {
			u.LookupCache = Duration(30 * time.Second)
		}
		positive("ldap.upstream.lookup_cache", u.LookupCache)
		if (u.LookupDN == "") != (u.LookupPasswordFile == "") {
			bad("ldap.upstream.lookup_dn", "lookup_dn and lookup_password_file go together")
		}
		if u.LookupDN != "" && !validDN(u.LookupDN) {
			bad("ldap.upstream.lookup_dn", "%q is not a DN", u.LookupDN)
		}
		fileExists("ldap.upstream.lookup_password_file", u.LookupPasswordFile)
	}
	for i, dn := range c.TwoStep.RequireGroups {
		if !validDN(dn) {
			bad(fmt.Sprintf("two_step.require_groups[%d]", i), "%q is not a group DN such as cn=2sv,ou=groups,dc=example,dc=org", dn)
		}
	}
	if len(c.TwoStep.RequireGroups) > 0 && c.LDAP.Upstream == nil {
		bad("two_step.require_groups", "needs ldap.upstream: group membership is read from the directory")
	}
	prefixes("two_step.exempt_networks", c.TwoStep.ExemptNetworks)

	addr("imap.listen", c.IMAP.Listen, true)
	tlsAddr("imap.imaps_listen", c.IMAP.IMAPSListen)
	positive("imap.prelogin_timeout", c.IMAP.PreLoginTimeout)
	if c.IMAP.MaxConns < 1 {
		bad("imap.max_conns", "must be at least 1")
	}
	oneOf("imap.login_format", c.IMAP.LoginFormat, "%Ln", "%n", "%Lu", "%u")
	prefixes("imap.trusted_networks", c.IMAP.TrustedNetworks)
	if u := c.IMAP.Upstream; u != nil && u.Host != "demo" {
		if u.Host == "" {
			bad("imap.upstream.host", "empty; give the mail server's host name, or demo")
		}
		if u.TLS == "" {
			u.TLS = "none"
		}
		oneOf("imap.upstream.tls", u.TLS, "none", "starttls", "implicit")
		if u.Port == 0 {
			u.Port = 143
			if u.TLS == "implicit" {
				u.Port = 993
			}
		}
		if u.Port < 1 || u.Port > 65535 {
			bad("imap.upstream.port", "%d is out of range 1 to 65535", u.Port)
		}
		fileExists("imap.upstream.ca_file", u.CAFile)
		if (u.MasterUser == "") != (u.MasterPasswordFile == "") {
			bad("imap.upstream.master_user", "master_user and master_password_file go together")
		}
		fileExists("imap.upstream.master_password_file", u.MasterPasswordFile)
	}
	c.validateMail(mailSection{key: "pop3", listen: c.POP3.Listen, implicit: c.POP3.POP3SListen, implicitKey: "pop3s_listen",
		timeout: c.POP3.PreLoginTimeout, maxConns: c.POP3.MaxConns, loginFormat: c.POP3.LoginFormat,
		trusted: c.POP3.TrustedNetworks, up: c.POP3.Upstream, plainPort: 110, implicitPort: 995},
		bad, addr, tlsAddr, positive, oneOf, prefixes, fileExists)
	c.validateMail(mailSection{key: "submission", listen: c.Submission.Listen, implicit: c.Submission.SubmissionsListen,
		implicitKey: "submissions_listen", timeout: c.Submission.PreLoginTimeout, maxConns: c.Submission.MaxConns,
		loginFormat: c.Submission.LoginFormat, trusted: c.Submission.TrustedNetworks, up: c.Submission.Upstream,
		plainPort: 587, implicitPort: 465},
		bad, addr, tlsAddr, positive, oneOf, prefixes, fileExists)
	c.validatePortal(bad, addr, oneOf, prefixes)
	if c.Limits.MaxConnsPerAddress < 1 {
		bad("limits.max_conns_per_address", "must be at least 1")
	}
	for i, e := range c.Limits.AddressExceptions {
		key := fmt.Sprintf("limits.address_exceptions[%d]", i)
		if len(e.Addresses) == 0 {
			bad(key+".addresses", "give at least one address or network, such as 10.0.0.0/24")
		} else if _, err := e.Prefixes(); err != nil {
			bad(key+".addresses", "%v", err)
		}
		if e.MaxConnsPerAddress < 1 {
			bad(key+".max_conns_per_address", "must be at least 1")
		}
	}
	if c.Limits.PasswordHashes < 0 {
		bad("limits.password_hashes", "must be 0 (one per CPU, within hash_memory) or more")
	}
	if c.Limits.HashMemory < 19<<20 {
		bad("limits.hash_memory", "must be at least 19MiB, the memory of one argon2id hash")
	}
	positive("limits.hash_wait", c.Limits.HashWait)

	// The delivery section checks itself; its errors name their keys.
	if err := c.Delivery.Validate(); err != nil {
		for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
			var ke *delivery.KeyError
			if errors.As(e, &ke) {
				bad(ke.Key, "%s", ke.Reason)
			} else {
				errs = append(errs, e)
			}
		}
	}
	return errors.Join(errs...)
}

// ValidateStore checks the store section alone: the account commands
// open the store with it, and should not stop on a problem in a part of
// the file that only serve reads.
func (c *Config) ValidateStore() error { return errors.Join(c.storeErrors()...) }

func (c *Config) storeErrors() []error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, &KeyError{File: c.file, Key: key, Reason: fmt.Sprintf(format, args...)})
	}
	dsnKey := "store.dsn"
	if c.dsnFromEnv {
		dsnKey = "store.dsn (from " + StoreDSNEnv + ")"
	}
	switch c.Store.Driver {
	case "sqlite":
		if c.Store.DSN != "" {
			bad(dsnKey, "set, but store.driver is sqlite (a file in the data folder); set store.driver: postgres to use it")
		}
		if c.Store.PasswordFile != "" {
			bad("store.password_file", "set, but store.driver is sqlite, which has no password")
		}
	case "postgres":
		if c.Store.DSN == "" {
			bad("store.dsn", "empty; give the database, such as postgres://stepgate@db.example.org/stepgate, or set %s", StoreDSNEnv)
			break
		}
		pc, err := pgconn.ParseConfig(c.Store.DSN)
		if err != nil {
			// pgconn's message shows the DSN with its password hidden.
			bad(dsnKey, "%v", err)
			break
		}
		if c.Store.PasswordFile != "" {
			if dsnHasPassword(c.Store.DSN, pc) {
				bad(dsnKey, "has a password and store.password_file is set too; keep the password in the file only")
			}
			if _, err := os.ReadFile(c.Store.PasswordFile); err != nil {
				bad("store.password_file", "%v", err)
			}
		}
	default:
		bad("store.driver", "%q is not one of sqlite, postgres", c.Store.Driver)
	}
	return errs
}

// dsnHasPassword reports whether the DSN itself carries a password (not
// one pgconn found in PGPASSWORD or a .pgpass file).
func dsnHasPassword(dsn string, pc *pgconn.Config) bool {
	if pc.Password == "" {
		return false
	}
	if u, err := url.Parse(dsn); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		_, ok := u.User.Password()
		return ok
	}
	return strings.Contains(dsn, "password=")
}

func validDN(dn string) bool {
	if dn == "" {
		return false
	}
	for _, rdn := range strings.Split(dn, ",") {
		k, v, ok := strings.Cut(rdn, "=")
		if !ok || strings.TrimSpace(k) == "" || strings.TrimSpace(v) == "" {
			return false
		}
	}
	return true
}

// SetIMAPUpstream sets the upstream from a --imap-upstream flag value:
// HOST:PORT, or demo.
func (c *Config) SetIMAPUpstream(v string) error {
	if v == "demo" {
		c.IMAP.Upstream = &IMAPUpstream{Host: "demo"}
		return nil
	}
	host, port, err := net.SplitHostPort(v)
	if err != nil {
		return &KeyError{Key: "--imap-upstream", Reason: fmt.Sprintf("%q is not HOST:PORT or demo", v)}
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return &KeyError{Key: "--imap-upstream", Reason: fmt.Sprintf("%q: port is not a number", v)}
	}
	tlsMode := "none"
	if c.IMAP.Upstream != nil && c.IMAP.Upstream.TLS != "" {
		tlsMode = c.IMAP.Upstream.TLS
	}
	c.IMAP.Upstream = &IMAPUpstream{Host: host, Port: p, TLS: tlsMode}
	return nil
}
