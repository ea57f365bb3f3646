package ldap

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	goldap "github.com/go-ldap/ldap/v3"

	updir "github.com/stepgate/stepgate/internal/directory"
	"github.com/stepgate/stepgate/internal/verifier"
)

// proxy is proxy mode: the directory is a real one upstream, reached with
// go-ldap's client on one upstream connection per client connection. The
// directory package finds the entry a bind name stands for and dials.
type proxy struct {
	dir         *updir.Directory
	passthrough []*goldap.DN
	userAttr    string
	timeout     time.Duration
	log         *slog.Logger
}

func newProxy(u *Upstream, baseDN string, dir *updir.Directory, log *slog.Logger) (*proxy, error) {
	if dir == nil {
		var err error
		dir, err = updir.New(updir.Config{URLs: u.URLs, StartTLS: u.StartTLS, CAFile: u.CAFile, Timeout: u.Timeout,
			BaseDN: baseDN, UserAttribute: u.UserAttribute, Log: log})
		if err != nil {
			return nil, err
		}
	}
	p := &proxy{dir: dir, userAttr: dir.UserAttribute(), timeout: u.Timeout, log: log}
	for _, s := range u.PassthroughDNs {
		dn, err := goldap.ParseDN(s)
		if err != nil {
			return nil, fmt.Errorf("ldap.upstream.passthrough_dns: %q: %w", s, err)
		}
		p.passthrough = append(p.passthrough, dn)
	}
	return p, nil
}

// dial connects to the first upstream that answers; errors wrap
// verifier.ErrUnavailable.
func (p *proxy) dial(ctx context.Context) (*goldap.Conn, error) { return p.dir.Dial(ctx) }

// probe checks that an upstream directory answers, and that the lookup
// account can bind (for /readyz).
func (p *proxy) probe(ctx context.Context) error { return p.dir.Probe(ctx) }

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
	// The verifier asks the directory which entry the name stands for
	// (its account, its identity, its groups); the bind, if the code is
	// right, names that entry's DN.
	chk := &upstreamBind{c: c, reuse: *prev}
	*prev = nil
	defer chk.dropReuse()
	d := c.s.v.Verify(ctx, verifier.Attempt{Protocol: "ldap", User: b.name, Secret: b.password, Remote: c.remote, TLS: c.tls,
		Password: chk, ServiceAccounts: true, Directory: p.dir, Resolved: func(e *verifier.DirectoryEntry) { chk.dn = e.DN }})
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
	c.up, c.boundDN, c.boundUser = chk.up, chk.dn, d.User
	if d.Session != nil {
		c.watch(d.Session.Revoked())
	}
	return result{code: resultSuccess}
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
