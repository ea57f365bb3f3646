package ldap

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	goldap "github.com/go-ldap/ldap/v3"

	"github.com/stepgate/stepgate/internal/certpool"
	"github.com/stepgate/stepgate/internal/verifier"
)

// proxy is proxy mode: the directory is a real one upstream, reached with
// go-ldap's client on one upstream connection per client connection.
type proxy struct {
	urls        []string
	startTLS    bool
	tls         *tls.Config
	timeout     time.Duration
	passthrough []*goldap.DN
	userAttr    string
	log         *slog.Logger
	// next is where failover starts: the URL that answered last.
	next atomic.Int64
}

func newProxy(u *Upstream, log *slog.Logger) (*proxy, error) {
	if len(u.URLs) == 0 {
		return nil, errors.New("ldap.upstream.urls: name at least one directory (ldap:// or ldaps://)")
	}
	p := &proxy{urls: u.URLs, startTLS: u.StartTLS, timeout: u.Timeout, userAttr: u.UserAttribute, log: log,
		tls: &tls.Config{MinVersion: tls.VersionTLS12}}
	for _, raw := range u.URLs {
		pu, err := url.Parse(raw)
		if err != nil || (pu.Scheme != "ldap" && pu.Scheme != "ldaps") || pu.Host == "" {
			return nil, fmt.Errorf("ldap.upstream.urls: %q is not an ldap:// or ldaps:// URL", raw)
		}
	}
	pool, err := certpool.Load("ldap.upstream.ca_file", u.CAFile)
	if err != nil {
		return nil, err
	}
	p.tls.RootCAs = pool
	for _, s := range u.PassthroughDNs {
		dn, err := goldap.ParseDN(s)
		if err != nil {
			return nil, fmt.Errorf("ldap.upstream.passthrough_dns: %q: %w", s, err)
		}
		p.passthrough = append(p.passthrough, dn)
	}
	return p, nil
}

// dial connects to the first upstream that answers, starting with the one
// that answered last; errors wrap verifier.ErrUnavailable.
func (p *proxy) dial(ctx context.Context) (*goldap.Conn, error) {
	var errs []error
	start := int(p.next.Load())
	for i := range p.urls {
		k := (start + i) % len(p.urls)
		raw := p.urls[k]
		pu, _ := url.Parse(raw)
		cfg := p.tls.Clone()
		cfg.ServerName = pu.Hostname()
		d := &net.Dialer{Timeout: p.timeout}
		if dl, ok := ctx.Deadline(); ok {
			d.Deadline = dl
		}
		c, err := goldap.DialURL(raw, goldap.DialWithDialer(d), goldap.DialWithTLSConfig(cfg))
		if err == nil && p.startTLS && pu.Scheme == "ldap" {
			if err = c.StartTLS(cfg); err != nil {
				c.Close()
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", raw, err))
			continue
		}
		c.SetTimeout(p.timeout)
		if k != start {
			p.log.Warn("upstream directory failover", "to", raw, "errors", errors.Join(errs...).Error())
		}
		p.next.Store(int64(k))
		return c, nil
	}
	return nil, fmt.Errorf("%w: no upstream directory answered: %v", verifier.ErrUnavailable, errors.Join(errs...))
}

// probe checks that an upstream directory answers (for /readyz).
func (p *proxy) probe(ctx context.Context) error {
	c, err := p.dial(ctx)
	if err != nil {
		return err
	}
	c.Close()
	return nil
}

func (p *proxy) isPassthrough(dn *goldap.DN) bool {
	for _, x := range p.passthrough {
		if x.EqualFold(dn) {
			return true
		}
	}
	return false
}

// Probe checks what the front end depends on: in proxy mode, that an
// upstream directory answers.
func (s *Server) Probe(ctx context.Context) error {
	if s.proxy == nil {
		return nil
	}
	return s.proxy.probe(ctx)
}

// upstreamError turns a go-ldap error into the result the client gets:
// the directory's own result, or unavailable when it could not be asked.
func upstreamError(err error) result {
	var le *goldap.Error
	if errors.As(err, &le) && le.ResultCode < goldap.ErrorNetwork {
		msg := ""
		if le.Err != nil {
			msg = le.Err.Error()
		}
		return result{code: le.ResultCode, matchedDN: le.MatchedDN, diagnostic: msg}
	}
	return result{code: resultUnavailable, diagnostic: "the directory is unavailable, try again later"}
}

// networkFailure reports whether err means the upstream connection is gone.
func networkFailure(err error) bool {
	var le *goldap.Error
	return errors.Is(err, verifier.ErrUnavailable) || (errors.As(err, &le) && le.ResultCode >= goldap.ErrorNetwork) ||
		(errors.As(err, &le) && (le.ResultCode == resultBusy || le.ResultCode == resultUnavailable))
}

// dropUpstream closes the connection's upstream connection, if any.
func (c *conn) dropUpstream() {
	if c.up != nil {
		c.up.Close()
		c.up = nil
	}
}

// proxyBind is a bind in proxy mode. Passthrough DNs bind upstream as
// they are; everyone else signs in through the verifier, whose password
// check is the upstream bind on this connection's own upstream
// connection, made only once the code is known to be right.
func (c *conn) proxyBind(ctx context.Context, b *bindRequest, prev **goldap.Conn) result {
	p := c.s.proxy
	if dn, err := goldap.ParseDN(b.name); err == nil && len(dn.RDNs) > 0 && p.isPassthrough(dn) {
		chk := &upstreamBind{c: c, dn: b.name, reuse: *prev}
		*prev = nil
		switch err := chk.CheckPassword(ctx, "", b.password); {
		case err == nil:
		case errors.Is(err, verifier.ErrUnavailable):
			return result{code: resultUnavailable, diagnostic: "the directory is unavailable, try again later"}
		default:
			return result{code: resultInvalidCredentials}
		}
		c.up, c.boundDN, c.boundUser, c.service = chk.up, b.name, "", true
		return result{code: resultSuccess}
	}
	user, dn, err := c.resolveUpstream(ctx, b.name)
	if err != nil {
		c.s.log.Warn("upstream directory unavailable", "err", err)
		return result{code: resultUnavailable, diagnostic: "the directory is unavailable, try again later"}
	}
	chk := &upstreamBind{c: c, dn: dn, reuse: *prev}
	*prev = nil
	defer chk.dropReuse()
	d := c.s.v.Verify(ctx, verifier.Attempt{Protocol: "ldap", User: user, Secret: b.password, Remote: c.remote, TLS: c.tls,
		Password: chk, ServiceAccounts: true})
	switch {
	case d.Allowed() && chk.up != nil:
	case d.Unavailable():
		chk.drop()
		return result{code: resultUnavailable, diagnostic: "the directory is unavailable, try again later"}
	case d.Busy():
		chk.drop()
		return result{code: resultBusy, diagnostic: "too many sign-ins at once, try again shortly"}
	default:
		chk.drop()
		if d.Allowed() {
			// Allowed without an upstream bind on this connection
			// cannot happen with a checker set; refuse rather than
			// act upstream as an identity not proven here.
			return result{code: resultInvalidCredentials}
		}
		return result{code: resultInvalidCredentials, diagnostic: d.Message, locked: d.Reason == verifier.ReasonLocked}
	}
	c.up, c.boundDN, c.boundUser = chk.up, dn, d.User
	if d.Session != nil {
		c.watch(d.Session.Revoked())
	}
	return result{code: resultSuccess}
}

// resolveUpstream finds the stepgate account and the upstream DN a bind
// name stands for. A DN whose first RDN is the user attribute needs no
// lookup; any other name is looked up upstream anonymously, reading only
// the user attribute (directories commonly allow that; one that does not
// needs DN binds named by the user attribute). Nothing is done upstream
// as a user before that user's password and code are proven.
func (c *conn) resolveUpstream(ctx context.Context, name string) (user, dn string, err error) {
	p := c.s.proxy
	attr := p.userAttr
	if parsed, perr := goldap.ParseDN(name); perr == nil && len(parsed.RDNs) > 1 && strings.Contains(name, "=") {
		first := parsed.RDNs[0].Attributes
		if len(first) == 1 && strings.EqualFold(first[0].Type, attr) {
			return first[0].Value, name, nil
		}
		v, err := c.lookup(ctx, name, goldap.ScopeBaseObject, "(objectClass=*)")
		return v, name, err
	}
	// NAME, or NAME@DOMAIN (matched whole when the attribute is mail).
	value := name
	if !strings.EqualFold(attr, "mail") && !strings.EqualFold(attr, "userPrincipalName") {
		if at := strings.LastIndexByte(name, '@'); at > 0 {
			value = name[:at]
		}
	}
	up, err := p.dial(ctx)
	if err != nil {
		return "", "", err
	}
	defer up.Close()
	res, err := up.Search(goldap.NewSearchRequest(c.s.cfg.BaseDN, goldap.ScopeWholeSubtree, goldap.NeverDerefAliases, 2, int(p.timeout.Seconds()), false,
		fmt.Sprintf("(%s=%s)", goldap.EscapeFilter(attr), goldap.EscapeFilter(value)), []string{attr}, nil))
	if err != nil {
		if networkFailure(err) {
			return "", "", err
		}
		return name, "", nil // no match: an unknown user, as far as anyone can tell
	}
	if len(res.Entries) != 1 {
		return name, "", nil
	}
	return value, res.Entries[0].DN, nil
}

// lookup reads the user attribute of the entry at dn.
func (c *conn) lookup(ctx context.Context, dn string, scope int, filter string) (string, error) {
	p := c.s.proxy
	up, err := p.dial(ctx)
	if err != nil {
		return "", err
	}
	defer up.Close()
	res, err := up.Search(goldap.NewSearchRequest(dn, scope, goldap.NeverDerefAliases, 1, int(p.timeout.Seconds()), false,
		filter, []string{p.userAttr}, nil))
	if err != nil {
		if networkFailure(err) {
			return "", err
		}
		return dn, nil
	}
	if len(res.Entries) != 1 {
		return dn, nil
	}
	if v := res.Entries[0].GetAttributeValue(p.userAttr); v != "" {
		return v, nil
	}
	return dn, nil
}

// upstreamBind is the verifier's password check in proxy mode: a bind on
// a fresh upstream connection that becomes the client's if all is well.
type upstreamBind struct {
	c  *conn
	dn string
	up *goldap.Conn
	// reuse is the client's previous upstream connection: a client that
	// binds again and again on one connection (the legacy reconnect)
	// costs one upstream bind each time, not a new upstream connection.
	reuse *goldap.Conn
}

// CheckPassword binds upstream as the user's DN with password.
func (u *upstreamBind) CheckPassword(ctx context.Context, _ string, password string) error {
	u.drop()
	if u.dn == "" || password == "" {
		u.dropReuse()
		return verifier.ErrBadPassword
	}
	up := u.reuse
	u.reuse = nil
	if up != nil && up.IsClosing() {
		up.Close()
		up = nil
	}
	if up != nil {
		err := up.Bind(u.dn, password)
		if err == nil {
			u.up = up
			return nil
		}
		up.Close()
		if !networkFailure(err) {
			return verifier.ErrBadPassword
		}
		// The old connection died: try a fresh one.
	}
	up, err := u.c.s.proxy.dial(ctx)
	if err != nil {
		u.c.s.log.Warn("upstream directory unavailable", "err", err)
		return err
	}
	if err := up.Bind(u.dn, password); err != nil {
		up.Close()
		if networkFailure(err) {
			u.c.s.log.Warn("upstream directory unavailable", "err", err)
			return fmt.Errorf("%w: %v", verifier.ErrUnavailable, err)
		}
		return verifier.ErrBadPassword
	}
	u.up = up
	return nil
}

// Identity reads the user attribute of the entry the bind authenticated,
// on the bound connection: the directory's own word for who signed in,
// whatever form of the name the client used. A directory that does not
// let users read their own entry is asked "Who am I?" (RFC 4532) instead,
// and the first RDN of the DN it names is taken when it is the user
// attribute.
func (u *upstreamBind) Identity(ctx context.Context) ([]string, error) {
	if u.up == nil {
		return nil, errors.New("no upstream bind")
	}
	attr := u.c.s.proxy.userAttr
	res, err := u.up.Search(goldap.NewSearchRequest(u.dn, goldap.ScopeBaseObject, goldap.NeverDerefAliases, 1,
		int(u.c.s.proxy.timeout.Seconds()), false, "(objectClass=*)", []string{attr}, nil))
	if err != nil && networkFailure(err) {
		return nil, fmt.Errorf("%w: reading the bound entry: %v", verifier.ErrUnavailable, err)
	}
	if err == nil && len(res.Entries) == 1 {
		if vs := res.Entries[0].GetEqualFoldAttributeValues(attr); len(vs) > 0 {
			return vs, nil
		}
	}
	who, err := u.up.WhoAmI(nil)
	if err != nil {
		if networkFailure(err) {
			return nil, fmt.Errorf("%w: who am I: %v", verifier.ErrUnavailable, err)
		}
		return nil, fmt.Errorf("the directory let the user read neither its %s nor who it is: %w", attr, err)
	}
	dn, err := goldap.ParseDN(strings.TrimPrefix(who.AuthzID, "dn:"))
	if err != nil || len(dn.RDNs) == 0 || len(dn.RDNs[0].Attributes) != 1 || !strings.EqualFold(dn.RDNs[0].Attributes[0].Type, attr) {
		return nil, fmt.Errorf("the directory named the bound user %q, which is not a %s DN", who.AuthzID, attr)
	}
	return []string{dn.RDNs[0].Attributes[0].Value}, nil
}

func (u *upstreamBind) drop() {
	if u.up != nil {
		u.up.Close()
		u.up = nil
	}
}

func (u *upstreamBind) dropReuse() {
	if u.reuse != nil {
		u.reuse.Close()
		u.reuse = nil
	}
}

// proxySearch runs a search upstream and streams the results back.
func (c *conn) proxySearch(ctx context.Context, id int64, q *searchRequest, controls []goldap.Control) error {
	done := func(r result, ctls ...goldap.Control) error {
		return c.write(encodeResult(id, goldap.ApplicationSearchResultDone, r, ctls...))
	}
	if c.up == nil {
		return done(result{code: resultInsufficientAccess, diagnostic: "anonymous search is not allowed: bind first"})
	}
	filter := q.filterString
	if filter == "" {
		return done(result{code: resultProtocolError, diagnostic: "filter not understood"})
	}
	req := goldap.NewSearchRequest(q.base, int(q.scope), int(q.deref), int(q.sizeLimit), int(q.timeLimit), q.typesOnly,
		filter, q.attributes, controls)
	resp := c.up.SearchAsync(ctx, req, 64)
	var last []goldap.Control
	for resp.Next() {
		switch {
		case resp.Entry() != nil:
			if err := c.queue(encodeUpstreamEntry(id, resp.Entry(), resp.Controls())); err != nil {
				return err
			}
		case resp.Referral() != "":
			if err := c.queue(encodeReference(id, resp.Referral())); err != nil {
				return err
			}
		default:
			last = resp.Controls() // the done message's controls
		}
	}
	if err := resp.Err(); err != nil {
		if networkFailure(err) {
			c.dropUpstream()
		}
		return done(upstreamError(err), last...)
	}
	return done(result{code: resultSuccess}, last...)
}

// proxyCompare runs a compare upstream.
func (c *conn) proxyCompare(q *compareRequest) result {
	if c.up == nil {
		return result{code: resultInsufficientAccess, diagnostic: "anonymous compare is not allowed: bind first"}
	}
	ok, err := c.up.Compare(q.dn, q.attr, q.value)
	switch {
	case err != nil:
		if networkFailure(err) {
			c.dropUpstream()
		}
		return upstreamError(err)
	case ok:
		return result{code: resultCompareTrue}
	}
	return result{code: resultCompareFalse}
}

// proxyWhoAmI asks the upstream directory who the connection is bound as.
func (c *conn) proxyWhoAmI() (string, result) {
	if c.up == nil {
		return "", result{code: resultSuccess}
	}
	res, err := c.up.WhoAmI(nil)
	if err != nil {
		return "", upstreamError(err)
	}
	return res.AuthzID, result{code: resultSuccess}
}
