package ldap

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"time"

	ber "github.com/go-asn1-ber/asn1-ber"
	goldap "github.com/go-ldap/ldap/v3"

	updir "github.com/stepgate/stepgate/internal/directory"
	"github.com/stepgate/stepgate/internal/verifier"
)

// proxy is proxy mode: the directory is a real one upstream, reached with
// go-ldap's client on one upstream connection per client connection. The
// directory package finds the entry a bind name stands for and dials.
type proxy struct {
	dir *updir.Directory
	// pwKey keys the hash of the password an upstream connection was
	// last bound with (see upstreamBind.CheckPassword).
	pwKey [32]byte
	// rebindSkip is how long an upstream bind on a connection stands in
	// for the next one as the same DN with the same password (see
	// upstreamBind.CheckPassword); tests shorten it.
	rebindSkip  atomic.Int64 // nanoseconds
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
	p.rebindSkip.Store(int64(rebindSkip))
	rand.Read(p.pwKey[:])
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
func (p *proxy) dial(ctx context.Context) (*upstream, error) {
	var mux *muxConn
	c, err := p.dir.DialVia(ctx, func(nc net.Conn) net.Conn {
		mux = newMuxConn(nc, p.timeout, p.log)
		return mux
	})
	if err != nil {
		return nil, err
	}
	return &upstream{Conn: c, mux: mux}, nil
}

// pwHash is the keyed hash of a DN and the password it bound with.
func (p *proxy) pwHash(dn, password string) [32]byte {
	h := hmac.New(sha256.New, p.pwKey[:])
	h.Write([]byte(dn))
	h.Write([]byte{0})
	h.Write([]byte(password))
	var out [32]byte
	h.Sum(out[:0])
	return out
}

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
func (c *conn) proxyBind(ctx context.Context, b *bindRequest, prev **upstream) result {
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
	up *upstream
	// reuse is the client's previous upstream connection: a client that
	// binds again and again on one connection (the legacy reconnect)
	// costs one upstream bind each time, not a new upstream connection.
	reuse *upstream
}

// rebindSkip is how long an upstream bind on a connection stands in for
// the next one as the same DN with the same password: see CheckPassword.
const rebindSkip = 30 * time.Second

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
	p := u.c.s.proxy
	pw := p.pwHash(u.dn, password)
	if up != nil && up.boundDN == u.dn && hmac.Equal(up.boundPW[:], pw[:]) && time.Since(up.boundAt) < time.Duration(p.rebindSkip.Load()) {
		// This connection is bound upstream as this DN with this very
		// password, and was so less than rebindSkip ago: binding again
		// would ask the directory what it has just said. The directory
		// is still asked when the password or DN differ, on every new
		// connection, and at least every rebindSkip here, so a password
		// changed upstream is noticed within rebindSkip on a connection
		// that keeps re-binding (a client that does not re-bind keeps
		// its upstream bind for as long as it stays, in any case).
		u.up = up
		return nil
	}
	if up != nil {
		err := up.Bind(u.dn, password)
		if err == nil {
			up.boundDN, up.boundPW, up.boundAt = u.dn, pw, time.Now()
			u.up = up
			return nil
		}
		up.Close()
		if !networkFailure(err) {
			return verifier.ErrBadPassword
		}
		// The old connection died: try a fresh one.
	}
	up, err := p.dial(ctx)
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
	up.boundDN, up.boundPW, up.boundAt = u.dn, pw, time.Now()
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

// proxySearch relays a search upstream and streams the answer back as
// the directory sent it: entries, references and the final result with
// every control, only the message ID changed to the client's. The
// request goes with its own controls, but for proxied authorization.
func (c *conn) proxySearch(ctx context.Context, m *message) error {
	if c.up == nil {
		return c.write(encodeResult(m.id, goldap.ApplicationSearchResultDone,
			result{code: resultInsufficientAccess, diagnostic: "anonymous search is not allowed: bind first"}))
	}
	var controls *ber.Packet
	if len(m.pkt.Children) > 2 {
		controls = ber.Encode(ber.ClassContext, ber.TypeConstructed, 0, nil, "Controls")
		for i, ctl := range m.controls {
			if ctl.oid != oidProxiedAuthz && ctl.oid != oidProxiedAuthzV1 {
				controls.AppendChild(m.pkt.Children[2].Children[i])
			}
		}
		if len(controls.Children) == 0 {
			controls = nil
		}
	}
	err := c.up.mux.search(ctx, m.pkt.Children[1], controls, func(rest []byte, last bool) error {
		c.wmu.Lock()
		defer c.wmu.Unlock()
		c.pending = appendMessage(c.pending, m.id, rest)
		if last || len(c.pending) >= 64<<10 {
			return c.flushLocked()
		}
		if c.flushTimer == nil {
			// A slow upstream's entries still stream.
			c.flushTimer = time.AfterFunc(10*time.Millisecond, func() {
				c.wmu.Lock()
				defer c.wmu.Unlock()
				c.flushTimer = nil
				if len(c.pending) > 0 {
					c.flushLocked()
				}
			})
		}
		return nil
	})
	if err == nil {
		return nil
	}
	c.dropUpstream()
	if errors.Is(err, errMalformed) || errors.Is(err, errTooLarge) || ctx.Err() != nil {
		// The stream to the client cannot be finished in good order.
		return err
	}
	c.s.log.Warn("upstream directory unavailable", "err", err)
	return c.write(encodeResult(m.id, goldap.ApplicationSearchResultDone,
		result{code: resultUnavailable, diagnostic: "the directory is unavailable, try again later"}))
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
