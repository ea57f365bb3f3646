// Package directory is what an upstream LDAP directory says about a name:
// which entry NAME, NAME@DOMAIN or a DN stands for, the account name and
// the stable identity (entryUUID, objectGUID) of that entry, and the
// groups it is in. It asks as stepgate's own read-only lookup account,
// or anonymously where the directory allows that, on a few connections
// that concurrent lookups share, and remembers answers briefly. The verifier uses it
// through verifier.Directory; the LDAP proxy dials its user connections
// with it; the CLI resolves a name before enrolling a person who has no
// row yet.
package directory

import (
	"context"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	ber "github.com/go-asn1-ber/asn1-ber"
	goldap "github.com/go-ldap/ldap/v3"

	"github.com/stepgate/stepgate/internal/certpool"
	"github.com/stepgate/stepgate/internal/verifier"
)

// Group membership modes.
const (
	// GroupsMemberOf reads the entry's memberOf (OpenLDAP's memberof
	// overlay, Active Directory).
	GroupsMemberOf = "memberof"
	// GroupsSearch searches for groupOfNames (member), groupOfUniqueNames
	// (uniqueMember) and posixGroup (memberUid) entries naming the person.
	GroupsSearch = "search"
)

// Config is the directory and how to ask it. The caller (internal/config)
// has checked and defaulted it; the keys in error messages are the
// ldap.upstream ones.
type Config struct {
	URLs     []string
	StartTLS bool
	CAFile   string
	Timeout  time.Duration
	// BaseDN is where people are searched for by name.
	BaseDN string
	// UserAttribute holds an entry's account name ("uid").
	UserAttribute string
	// IDAttribute holds an entry's stable identity ("entryUUID",
	// "objectGUID"); "" finds accounts by name alone.
	IDAttribute string
	// LookupDN and LookupPassword are stepgate's read-only account;
	// without them lookups are anonymous.
	LookupDN, LookupPassword string
	// Groups is GroupsMemberOf, GroupsSearch, or "" to read no groups.
	Groups string
	// GroupBaseDN is where GroupsSearch looks ("" is BaseDN).
	GroupBaseDN string
	// CacheTTL is how long an answer is remembered (0: 30s).
	CacheTTL time.Duration
	// PoolSize is how many lookup connections are kept (0: 4).
	PoolSize int
	Log      *slog.Logger
}

// Directory asks one upstream directory (with failover between its URLs).
// It is safe for concurrent use.
type Directory struct {
	cfg  Config
	tls  *tls.Config
	next atomic.Int64 // the URL that answered last
	// slots are the lookup connections, shared: go-ldap runs concurrent
	// requests on one connection, so lookups take turns by slot rather
	// than each holding a connection (which, under load, would dial and
	// bind as the lookup account for nearly every lookup).
	slots []slot
	turn  atomic.Uint64

	mu    sync.Mutex
	cache map[string]cached
}

type slot struct {
	mu sync.Mutex
	c  *goldap.Conn
}

type cached struct {
	entry *verifier.DirectoryEntry
	at    time.Time
}

// maxCached bounds the answers kept: names sprayed by an attacker must not
// grow memory without end.
const maxCached = 10000

// New checks cfg and returns a Directory; it connects only when asked.
func New(cfg Config) (*Directory, error) {
	if len(cfg.URLs) == 0 {
		return nil, errors.New("ldap.upstream.urls: name at least one directory (ldap:// or ldaps://)")
	}
	for _, raw := range cfg.URLs {
		pu, err := url.Parse(raw)
		if err != nil || (pu.Scheme != "ldap" && pu.Scheme != "ldaps") || pu.Host == "" {
			return nil, fmt.Errorf("ldap.upstream.urls: %q is not an ldap:// or ldaps:// URL", raw)
		}
	}
	if cfg.UserAttribute == "" {
		cfg.UserAttribute = "uid"
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.CacheTTL <= 0 {
		cfg.CacheTTL = 30 * time.Second
	}
	if cfg.PoolSize <= 0 {
		cfg.PoolSize = 4
	}
	if cfg.GroupBaseDN == "" {
		cfg.GroupBaseDN = cfg.BaseDN
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	switch cfg.Groups {
	case "", GroupsMemberOf, GroupsSearch:
	default:
		return nil, fmt.Errorf("ldap.upstream.groups: %q is not memberof or search", cfg.Groups)
	}
	pool, err := certpool.Load("ldap.upstream.ca_file", cfg.CAFile)
	if err != nil {
		return nil, err
	}
	return &Directory{cfg: cfg, tls: &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool},
		slots: make([]slot, cfg.PoolSize), cache: map[string]cached{}}, nil
}

// UserAttribute is the attribute that holds an entry's account name.
func (d *Directory) UserAttribute() string { return d.cfg.UserAttribute }

// Dial connects to the first upstream that answers, starting with the one
// that answered last; errors wrap verifier.ErrUnavailable. The connection
// is not bound.
func (d *Directory) Dial(ctx context.Context) (*goldap.Conn, error) {
	return d.failover(ctx, func(raw string, pu *url.URL, cfg *tls.Config, dialer *net.Dialer) (*goldap.Conn, error) {
		c, err := goldap.DialURL(raw, goldap.DialWithDialer(dialer), goldap.DialWithTLSConfig(cfg))
		if err == nil && d.cfg.StartTLS && pu.Scheme == "ldap" {
			if err = c.StartTLS(cfg); err != nil {
				c.Close()
			}
		}
		return c, err
	})
}

// DialVia is Dial with wrap put between the connection (TLS on, StartTLS
// done) and go-ldap's client: the LDAP proxy reads the upstream's
// messages there itself, relaying its own as they are and handing
// go-ldap the rest.
func (d *Directory) DialVia(ctx context.Context, wrap func(net.Conn) net.Conn) (*goldap.Conn, error) {
	return d.failover(ctx, func(raw string, pu *url.URL, cfg *tls.Config, dialer *net.Dialer) (*goldap.Conn, error) {
		host := pu.Host
		if pu.Port() == "" {
			port := "389"
			if pu.Scheme == "ldaps" {
				port = "636"
			}
			host = net.JoinHostPort(pu.Hostname(), port)
		}
		var nc net.Conn
		var err error
		isTLS := pu.Scheme == "ldaps"
		if isTLS {
			nc, err = tls.DialWithDialer(dialer, "tcp", host, cfg)
		} else {
			nc, err = dialer.DialContext(ctx, "tcp", host)
		}
		if err != nil {
			return nil, goldap.NewError(goldap.ErrorNetwork, err)
		}
		if d.cfg.StartTLS && !isTLS {
			if nc, err = startTLS(nc, cfg, d.cfg.Timeout); err != nil {
				return nil, goldap.NewError(goldap.ErrorNetwork, err)
			}
			isTLS = true
		}
		c := goldap.NewConn(wrap(nc), isTLS)
		c.Start()
		return c, nil
	})
}

// startTLS asks for TLS (RFC 4511 4.14) on a fresh connection and starts
// it; nc is closed on failure.
func startTLS(nc net.Conn, cfg *tls.Config, timeout time.Duration) (net.Conn, error) {
	nc.SetDeadline(time.Now().Add(timeout))
	req := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "")
	req.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, int64(1), ""))
	ext := ber.Encode(ber.ClassApplication, ber.TypeConstructed, goldap.ApplicationExtendedRequest, nil, "")
	ext.AppendChild(ber.NewString(ber.ClassContext, ber.TypePrimitive, 0, "1.3.6.1.4.1.1466.20037", ""))
	req.AppendChild(ext)
	if _, err := nc.Write(req.Bytes()); err != nil {
		nc.Close()
		return nil, fmt.Errorf("StartTLS: %w", err)
	}
	resp, err := ber.ReadPacket(nc)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("StartTLS: %w", err)
	}
	if len(resp.Children) < 2 || len(resp.Children[1].Children) < 1 {
		nc.Close()
		return nil, errors.New("StartTLS: malformed response")
	}
	if code, _ := resp.Children[1].Children[0].Value.(int64); code != 0 {
		nc.Close()
		return nil, fmt.Errorf("StartTLS refused: result %d", code)
	}
	tc := tls.Client(nc, cfg)
	if err := tc.Handshake(); err != nil {
		nc.Close()
		return nil, fmt.Errorf("StartTLS: %w", err)
	}
	tc.SetDeadline(time.Time{})
	return tc, nil
}

// failover tries each upstream URL in turn, from the one that answered
// last, with dial.
func (d *Directory) failover(ctx context.Context, dial func(raw string, pu *url.URL, cfg *tls.Config, dialer *net.Dialer) (*goldap.Conn, error)) (*goldap.Conn, error) {
	var errs []error
	start := int(d.next.Load())
	for i := range d.cfg.URLs {
		k := (start + i) % len(d.cfg.URLs)
		raw := d.cfg.URLs[k]
		pu, _ := url.Parse(raw)
		cfg := d.tls.Clone()
		cfg.ServerName = pu.Hostname()
		dialer := &net.Dialer{Timeout: d.cfg.Timeout}
		if dl, ok := ctx.Deadline(); ok {
			dialer.Deadline = dl
		}
		c, err := dial(raw, pu, cfg, dialer)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", raw, err))
			continue
		}
		c.SetTimeout(d.cfg.Timeout)
		if k != start {
			d.cfg.Log.Warn("upstream directory failover", "to", raw, "errors", errors.Join(errs...).Error())
		}
		d.next.Store(int64(k))
		return c, nil
	}
	return nil, fmt.Errorf("%w: no upstream directory answered: %v", verifier.ErrUnavailable, errors.Join(errs...))
}

// NetworkFailure reports whether err means the connection is gone or the
// directory cannot serve now (busy, unavailable), rather than an answer.
func NetworkFailure(err error) bool {
	var le *goldap.Error
	return errors.Is(err, verifier.ErrUnavailable) || (errors.As(err, &le) &&
		(le.ResultCode >= goldap.ErrorNetwork || le.ResultCode == goldap.LDAPResultBusy || le.ResultCode == goldap.LDAPResultUnavailable))
}

// conn returns a lookup connection, bound as the lookup account, shared
// with other lookups; done reports how the request on it went, so that a
// broken connection is replaced.
func (d *Directory) conn(ctx context.Context) (c *goldap.Conn, done func(error), fresh bool, err error) {
	sl := &d.slots[d.turn.Add(1)%uint64(len(d.slots))]
	sl.mu.Lock()
	defer sl.mu.Unlock()
	if sl.c != nil && sl.c.IsClosing() {
		sl.c.Close()
		sl.c = nil
	}
	if sl.c == nil {
		if sl.c, err = d.dialLookup(ctx); err != nil {
			return nil, nil, false, err
		}
		fresh = true
	}
	c = sl.c
	return c, func(err error) {
		if err == nil || !NetworkFailure(err) {
			return
		}
		sl.mu.Lock()
		if sl.c == c {
			sl.c = nil
		}
		sl.mu.Unlock()
		c.Close()
	}, fresh, nil
}

// dialLookup connects and binds as the lookup account (anonymous without
// one).
func (d *Directory) dialLookup(ctx context.Context) (*goldap.Conn, error) {
	c, err := d.Dial(ctx)
	if err != nil {
		return nil, err
	}
	if d.cfg.LookupDN != "" {
		if err := c.Bind(d.cfg.LookupDN, d.cfg.LookupPassword); err != nil {
			c.Close()
			// Not the client's fault: the sign-in is unavailable, and
			// the log says why.
			return nil, fmt.Errorf("%w: lookup bind as %s (ldap.upstream.lookup_dn): %v", verifier.ErrUnavailable, d.cfg.LookupDN, err)
		}
	}
	return c, nil
}

// Close closes the lookup connections.
func (d *Directory) Close() error {
	for i := range d.slots {
		sl := &d.slots[i]
		sl.mu.Lock()
		if sl.c != nil {
			sl.c.Close()
			sl.c = nil
		}
		sl.mu.Unlock()
	}
	return nil
}

// Probe checks that the directory answers and, with a lookup account,
// that the account can bind (for /readyz).
func (d *Directory) Probe(ctx context.Context) error {
	_, _, _, err := d.conn(ctx)
	return err
}

// Lookup returns the entry name stands for: a DN is read as it is; any
// other name is searched for under the base DN by the user attribute
// (NAME@DOMAIN as its part before '@', unless the attribute holds whole
// addresses: mail, userPrincipalName). nil: no such entry, or more than
// one. Answers are remembered for the cache's time.
func (d *Directory) Lookup(ctx context.Context, name string) (*verifier.DirectoryEntry, error) {
	key := strings.ToLower(name)
	now := time.Now()
	d.mu.Lock()
	if c, ok := d.cache[key]; ok && now.Sub(c.at) < d.cfg.CacheTTL {
		d.mu.Unlock()
		return copyEntry(c.entry), nil
	}
	d.mu.Unlock()
	e, err := d.lookup(ctx, name)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	if len(d.cache) >= maxCached {
		for k, c := range d.cache {
			if now.Sub(c.at) >= d.cfg.CacheTTL {
				delete(d.cache, k)
			}
		}
		if len(d.cache) >= maxCached {
			d.cache = map[string]cached{}
		}
	}
	d.cache[key] = cached{entry: e, at: now}
	d.mu.Unlock()
	return copyEntry(e), nil
}

// Forget drops the remembered answers (after the directory changed under
// a test, or an administrator's command).
func (d *Directory) Forget() {
	d.mu.Lock()
	d.cache = map[string]cached{}
	d.mu.Unlock()
}

func copyEntry(e *verifier.DirectoryEntry) *verifier.DirectoryEntry {
	if e == nil {
		return nil
	}
	c := *e
	c.Groups = append([]string(nil), e.Groups...)
	return &c
}

func (d *Directory) lookup(ctx context.Context, name string) (*verifier.DirectoryEntry, error) {
	attr := d.cfg.UserAttribute
	attrs := []string{attr}
	if d.cfg.IDAttribute != "" {
		attrs = append(attrs, d.cfg.IDAttribute)
	}
	if d.cfg.Groups == GroupsMemberOf {
		attrs = append(attrs, "memberOf")
	}
	base, scope, filter, value := d.cfg.BaseDN, goldap.ScopeWholeSubtree, "", name
	if parsed, err := goldap.ParseDN(name); err == nil && len(parsed.RDNs) > 1 && strings.Contains(name, "=") {
		base, scope, filter, value = name, goldap.ScopeBaseObject, "(objectClass=*)", ""
	} else {
		if !strings.EqualFold(attr, "mail") && !strings.EqualFold(attr, "userPrincipalName") {
			if at := strings.LastIndexByte(name, '@'); at > 0 {
				value = name[:at]
			}
		}
		filter = fmt.Sprintf("(%s=%s)", goldap.EscapeFilter(attr), goldap.EscapeFilter(value))
	}
	var (
		c    *goldap.Conn
		res  *goldap.SearchResult
		done func(error)
		err  error
	)
	for {
		var fresh bool
		c, done, fresh, err = d.conn(ctx)
		if err != nil {
			return nil, err
		}
		res, err = c.Search(goldap.NewSearchRequest(base, scope, goldap.NeverDerefAliases, 2, int(d.cfg.Timeout.Seconds()), false,
			filter, attrs, nil))
		done(err)
		// A shared connection that the directory closed meanwhile (a
		// restart, an idle timeout) is not the directory being down:
		// once more, on a new one.
		if err == nil || fresh || !NetworkFailure(err) {
			break
		}
	}
	if err != nil {
		if NetworkFailure(err) {
			return nil, fmt.Errorf("%w: looking up %q: %v", verifier.ErrUnavailable, name, err)
		}
		if goldap.IsErrorWithCode(err, goldap.LDAPResultSizeLimitExceeded) {
			return nil, nil // more than one entry: no one in particular
		}
		// No such object, no access: as far as anyone can tell, no one.
		return nil, nil
	}
	if len(res.Entries) != 1 {
		return nil, nil
	}
	ent := res.Entries[0]
	e := &verifier.DirectoryEntry{DN: ent.DN, Name: pickName(ent.GetEqualFoldAttributeValues(attr), value)}
	if e.Name == "" {
		return nil, nil // not a person's entry as stepgate knows people
	}
	if d.cfg.IDAttribute != "" {
		e.ID = identity(d.cfg.IDAttribute, ent.GetEqualFoldRawAttributeValue(d.cfg.IDAttribute))
	}
	switch d.cfg.Groups {
	case GroupsMemberOf:
		e.Groups = normalizeAll(ent.GetEqualFoldAttributeValues("memberOf"))
	case GroupsSearch:
		e.Groups, err = d.searchGroups(c, e)
		done(err)
		if err != nil {
			if NetworkFailure(err) {
				return nil, fmt.Errorf("%w: groups of %q: %v", verifier.ErrUnavailable, e.DN, err)
			}
			return nil, fmt.Errorf("groups of %q: %w", e.DN, err)
		}
	}
	return e, nil
}

// pickName is the user attribute value that the name was searched for
// by, when the entry has several (uid: alice, uid: a.liddell), or the
// first.
func pickName(values []string, want string) string {
	for _, v := range values {
		if want != "" && strings.EqualFold(v, want) {
			return v
		}
	}
	if len(values) > 0 {
		return values[0]
	}
	return ""
}

// searchGroups finds the groups that name the person as a member, in the
// three forms directories use.
func (d *Directory) searchGroups(c *goldap.Conn, e *verifier.DirectoryEntry) ([]string, error) {
	dn, name := goldap.EscapeFilter(e.DN), goldap.EscapeFilter(e.Name)
	filter := fmt.Sprintf("(|(&(objectClass=groupOfNames)(member=%s))(&(objectClass=groupOfUniqueNames)(uniqueMember=%s))(&(objectClass=posixGroup)(memberUid=%s)))",
		dn, dn, name)
	res, err := c.Search(goldap.NewSearchRequest(d.cfg.GroupBaseDN, goldap.ScopeWholeSubtree, goldap.NeverDerefAliases, 0,
		int(d.cfg.Timeout.Seconds()), false, filter, []string{"1.1"}, nil))
	if err != nil {
		return nil, err
	}
	var dns []string
	for _, g := range res.Entries {
		dns = append(dns, g.DN)
	}
	return normalizeAll(dns), nil
}

// identity is the string form of an identity attribute's value:
// objectGUID (16 bytes, little-endian in its first three fields) as
// Active Directory prints it, text as it is, other bytes in hex.
func identity(attr string, raw []byte) string {
	switch {
	case len(raw) == 0:
		return ""
	case strings.EqualFold(attr, "objectGUID") && len(raw) == 16:
		b := raw
		return fmt.Sprintf("%02x%02x%02x%02x-%02x%02x-%02x%02x-%x-%x",
			b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6], b[8:10], b[10:16])
	case utf8.Valid(raw):
		return string(raw)
	}
	return hex.EncodeToString(raw)
}

// NormalizeDN is the form in which group DNs are compared: attribute
// types and values in lower case, no spaces around separators. Group
// names and the rules that name them then match however the directory or
// the configuration spelt them.
func NormalizeDN(s string) (string, error) {
	dn, err := goldap.ParseDN(s)
	if err != nil {
		return "", err
	}
	if len(dn.RDNs) == 0 {
		return "", errors.New("empty DN")
	}
	rdns := make([]string, len(dn.RDNs))
	for i, r := range dn.RDNs {
		parts := make([]string, len(r.Attributes))
		for j, a := range r.Attributes {
			parts[j] = strings.ToLower(a.Type) + "=" + goldap.EscapeDN(strings.ToLower(a.Value))
		}
		rdns[i] = strings.Join(parts, "+")
	}
	return strings.Join(rdns, ","), nil
}

func normalizeAll(dns []string) []string {
	out := make([]string, 0, len(dns))
	for _, s := range dns {
		if n, err := NormalizeDN(s); err == nil {
			out = append(out, n)
		}
	}
	return out
}
