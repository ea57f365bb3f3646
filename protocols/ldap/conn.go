package ldap

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	goldap "github.com/go-ldap/ldap/v3"

	"github.com/stepgate/stepgate/internal/verifier"
)

// Result codes stepgate answers with (RFC 4511 4.1.9).
const (
	resultSuccess                 = goldap.LDAPResultSuccess
	resultOperationsError         = goldap.LDAPResultOperationsError
	resultProtocolError           = goldap.LDAPResultProtocolError
	resultTimeLimitExceeded       = goldap.LDAPResultTimeLimitExceeded
	resultSizeLimitExceeded       = goldap.LDAPResultSizeLimitExceeded
	resultCompareFalse            = goldap.LDAPResultCompareFalse
	resultCompareTrue             = goldap.LDAPResultCompareTrue
	resultAuthMethodNotSupported  = goldap.LDAPResultAuthMethodNotSupported
	resultConfidentialityRequired = goldap.LDAPResultConfidentialityRequired
	resultNoSuchAttribute         = goldap.LDAPResultNoSuchAttribute
	resultNoSuchObject            = goldap.LDAPResultNoSuchObject
	resultInvalidDNSyntax         = goldap.LDAPResultInvalidDNSyntax
	resultInvalidCredentials      = goldap.LDAPResultInvalidCredentials
	resultInsufficientAccess      = goldap.LDAPResultInsufficientAccessRights
	resultBusy                    = goldap.LDAPResultBusy
	resultUnavailable             = goldap.LDAPResultUnavailable
	resultUnwillingToPerform      = goldap.LDAPResultUnwillingToPerform
	resultOther                   = goldap.LDAPResultOther
)

// conn is one client connection. Requests are served one after another:
// the clients stepgate is for bind, maybe search, and leave.
type conn struct {
	s *Server
	// nc is the accepted connection or the TLS layer over it.
	nc     net.Conn
	r      *bufio.Reader
	remote string // address without the port
	tls    bool

	// Bind state: empty boundDN is anonymous.
	boundDN   string
	boundUser string
	service   bool
	// up is the upstream connection in proxy mode, bound as boundDN.
	up *upstream
	// unwatch stops the goroutine that closes the connection when the
	// session behind its bind is revoked.
	unwatch chan struct{}

	wmu        sync.Mutex
	pending    []byte // queued responses, under wmu
	flushTimer *time.Timer
}

func newConn(s *Server, nc net.Conn, implicitTLS bool) *conn {
	host, _, err := net.SplitHostPort(nc.RemoteAddr().String())
	if err != nil {
		host = nc.RemoteAddr().String()
	}
	return &conn{s: s, nc: nc, r: bufio.NewReaderSize(nc, 4096), remote: host, tls: implicitTLS}
}

func deadline(d time.Duration) time.Time { return time.Now().Add(d) }

func (c *conn) serve(ctx context.Context) {
	defer c.nc.Close()
	defer c.stopWatch()
	defer c.dropUpstream()
	log := c.s.log.With("remote", c.nc.RemoteAddr().String())
	if tc, ok := c.nc.(*tls.Conn); ok {
		tc.SetDeadline(deadline(c.s.cfg.ReadTimeout))
		if err := tc.HandshakeContext(ctx); err != nil {
			log.Info("connection closed: TLS handshake failed", "err", err)
			return
		}
		tc.SetDeadline(time.Time{})
	}
	for {
		c.nc.SetReadDeadline(deadline(c.s.cfg.IdleTimeout))
		p, err := readMessage(c.r, c.maxMessage(), func() {
			c.nc.SetReadDeadline(deadline(c.s.cfg.ReadTimeout))
		})
		var m *message
		if err == nil {
			m, err = decode(p)
		}
		if err != nil {
			c.endOnError(log, err)
			return
		}
		if !c.handle(ctx, m) {
			return
		}
	}
}

// maxMessage is the size cap for the next request: the configured one
// once bound, and only what a bind needs before.
func (c *conn) maxMessage() int {
	if c.boundDN == "" {
		return min(int(c.s.cfg.MaxMessageBytes), preBindMaxBytes)
	}
	return int(c.s.cfg.MaxMessageBytes)
}

// endOnError closes the connection after a read failed, saying why in one
// log line (and, for bad input, to the client too).
func (c *conn) endOnError(log interface {
	Info(string, ...any)
	Warn(string, ...any)
	Debug(string, ...any)
}, err error) {
	switch {
	case errors.Is(err, errMalformed), errors.Is(err, errTooLarge):
		log.Warn("connection closed: bad request", "err", err)
		c.write(encodeExtended(0, result{code: resultProtocolError, diagnostic: "malformed or oversized request"}, oidNoticeOfDisconnection, nil))
	case errors.Is(err, os.ErrDeadlineExceeded):
		log.Info("connection closed: timed out waiting for a request")
	case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
		log.Debug("connection closed by the client")
	default:
		log.Info("connection closed", "err", err)
	}
}

// write sends b, and whatever queue held back, now.
func (c *conn) write(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.pending = append(c.pending, b...)
	return c.flushLocked()
}

// queue sends b with the next write, when 64 KiB are waiting, or after
// at most 10 ms: search entries go out in a few large writes rather than
// one syscall each, and a slow upstream's entries still stream.
func (c *conn) queue(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if len(c.pending) == 0 {
		c.flushTimer = time.AfterFunc(10*time.Millisecond, func() {
			c.wmu.Lock()
			defer c.wmu.Unlock()
			if len(c.pending) > 0 {
				c.flushLocked()
			}
		})
	}
	c.pending = append(c.pending, b...)
	if len(c.pending) < 64<<10 {
		return nil
	}
	return c.flushLocked()
}

func (c *conn) flushLocked() error {
	if c.flushTimer != nil {
		c.flushTimer.Stop()
		c.flushTimer = nil
	}
	c.nc.SetWriteDeadline(deadline(c.s.cfg.ReadTimeout))
	_, err := c.nc.Write(c.pending)
	if cap(c.pending) > 256<<10 {
		c.pending = nil // do not keep a large buffer for an idle connection
	} else {
		c.pending = c.pending[:0]
	}
	return err
}

// handle serves one request; false ends the connection.
func (c *conn) handle(ctx context.Context, m *message) bool {
	if oid := c.unsupportedCritical(m); oid != "" {
		return c.refuseCritical(m, oid)
	}
	switch m.op {
	case goldap.ApplicationUnbindRequest:
		return false
	case goldap.ApplicationAbandonRequest:
		// Requests are answered in order, so whatever was to be
		// abandoned has already been answered.
		return true
	case goldap.ApplicationBindRequest:
		r := c.bind(ctx, m.req.(*bindRequest))
		var ctls []goldap.Control
		if m.has(oidPasswordPolicy) {
			ctls = append(ctls, passwordPolicyResponse(r.locked))
		}
		return c.write(encodeResult(m.id, goldap.ApplicationBindResponse, r, ctls...)) == nil
	case goldap.ApplicationSearchRequest:
		q := m.req.(*searchRequest)
		if c.relayed(m) {
			return c.proxySearch(ctx, m) == nil
		}
		return c.search(ctx, m.id, q) == nil
	case goldap.ApplicationCompareRequest:
		if c.s.proxy != nil {
			return c.write(encodeResult(m.id, goldap.ApplicationCompareResponse, c.proxyCompare(m.req.(*compareRequest)))) == nil
		}
		return c.write(encodeResult(m.id, goldap.ApplicationCompareResponse, c.compare(ctx, m.req.(*compareRequest)))) == nil
	case goldap.ApplicationExtendedRequest:
		return c.extended(m.id, m.req.(*extendedRequest))
	case goldap.ApplicationModifyRequest, goldap.ApplicationAddRequest, goldap.ApplicationDelRequest, goldap.ApplicationModifyDNRequest:
		// Responses are the request's tag plus one (RFC 4511 4.6 - 4.9).
		r := result{code: resultUnwillingToPerform, diagnostic: "the directory is read-only; manage accounts with `stepgate user`"}
		return c.write(encodeResult(m.id, m.op+1, r)) == nil
	}
	return false
}

func (c *conn) extended(id int64, e *extendedRequest) bool {
	switch e.oid {
	case oidWhoAmI:
		v := ""
		if c.s.proxy != nil {
			var r result
			if v, r = c.proxyWhoAmI(); r.code != resultSuccess {
				return c.write(encodeExtended(id, r, "", nil)) == nil
			}
			return c.write(encodeExtended(id, result{code: resultSuccess}, "", &v)) == nil
		}
		if c.boundDN != "" {
			v = "dn:" + c.boundDN
		}
		return c.write(encodeExtended(id, result{code: resultSuccess}, "", &v)) == nil
	case oidStartTLS:
		switch {
		case c.s.tls == nil:
			return c.write(encodeExtended(id, result{code: resultProtocolError, diagnostic: "StartTLS is not configured on this server"}, oidStartTLS, nil)) == nil
		case c.tls:
			return c.write(encodeExtended(id, result{code: resultOperationsError, diagnostic: "TLS is already on"}, oidStartTLS, nil)) == nil
		case c.r.Buffered() > 0:
			// Bytes after the request would be read as plain text
			// under TLS: a client doing that is broken or hostile.
			c.write(encodeExtended(id, result{code: resultProtocolError, diagnostic: "data after StartTLS request"}, oidStartTLS, nil))
			return false
		}
		if c.write(encodeExtended(id, result{code: resultSuccess}, oidStartTLS, nil)) != nil {
			return false
		}
		tc := tls.Server(c.nc, c.s.tls)
		tc.SetDeadline(deadline(c.s.cfg.ReadTimeout))
		if err := tc.Handshake(); err != nil {
			c.s.log.Info("connection closed: StartTLS handshake failed", "remote", c.nc.RemoteAddr().String(), "err", err)
			return false
		}
		tc.SetDeadline(time.Time{})
		c.wmu.Lock()
		c.nc, c.r, c.tls = tc, bufio.NewReaderSize(tc, 4096), true
		c.wmu.Unlock()
		return true
	}
	return c.write(encodeExtended(id, result{code: resultProtocolError, diagnostic: "unsupported extended operation " + e.oid}, "", nil)) == nil
}

// loopback reports whether the client is on this machine.
func (c *conn) loopback() bool {
	ip := net.ParseIP(c.remote)
	return ip != nil && ip.IsLoopback()
}

func (c *conn) bind(ctx context.Context, b *bindRequest) result {
	// Any bind starts from anonymous (RFC 4511 4.2.1). In proxy mode the
	// upstream connection is kept aside, unusable by the client, for the
	// upstream bind of this attempt to reuse; it is closed unless that
	// bind takes it.
	c.stopWatch()
	prev := c.up
	c.up = nil
	defer func() {
		if prev != nil {
			prev.Close()
		}
	}()
	c.boundDN, c.boundUser, c.service = "", "", false
	if b.version != 3 {
		return result{code: resultProtocolError, diagnostic: "only LDAPv3 is supported"}
	}
	if !b.simple {
		return result{code: resultAuthMethodNotSupported, diagnostic: "use a simple bind with the password followed by the code"}
	}
	if b.name == "" && b.password == "" {
		return result{code: resultSuccess} // anonymous
	}
	user := c.s.bindUser(b.name)
	if !c.tls && !c.loopback() && !c.s.cfg.AllowPlainRemote {
		c.s.v.Refuse(ctx, verifier.Attempt{Protocol: "ldap", User: user, Remote: c.remote}, verifier.ReasonPlainText)
		return result{code: resultConfidentialityRequired, diagnostic: "use StartTLS or ldaps:// to send a password"}
	}
	if c.s.proxy != nil {
		return c.proxyBind(ctx, b, &prev)
	}
	d := c.s.v.Verify(ctx, verifier.Attempt{Protocol: "ldap", User: user, Secret: b.password, Remote: c.remote, TLS: c.tls,
		ServiceAccounts: true})
	switch {
	case d.Allowed():
	case d.Unavailable():
		return result{code: resultUnavailable, diagnostic: "the password service is unavailable, try again later"}
	case d.Busy():
		return result{code: resultBusy, diagnostic: "too many sign-ins at once, try again shortly"}
	default:
		return result{code: resultInvalidCredentials, diagnostic: d.Message, locked: d.Reason == verifier.ReasonLocked}
	}
	t, err := c.s.dir.snapshot(ctx)
	if err != nil {
		c.s.log.Error("bind: directory unavailable", "err", err)
		return result{code: resultOther, diagnostic: "internal error"}
	}
	c.boundUser = d.User
	c.boundDN = c.s.dir.userDN(d.User)
	if dn, _ := goldap.ParseDN(c.s.dir.serviceDN(d.User)); dn != nil && t.find(dn) != nil {
		c.boundDN, c.service = c.s.dir.serviceDN(d.User), true
	}
	if d.Session != nil {
		c.watch(d.Session.Revoked())
	}
	return result{code: resultSuccess}
}

// bindUser takes the account name out of a bind name: the uid of
// uid=NAME,ou=people,BASE (or ou=services), NAME of NAME@DOMAIN, or NAME.
// A DN elsewhere in the tree names no account; it goes to the verifier as
// is, so that it costs the same work and gets the same answer as any
// unknown user.
func (s *Server) bindUser(name string) string {
	if strings.Contains(name, "=") {
		dn, err := goldap.ParseDN(name)
		if err != nil || len(dn.RDNs) < 2 || len(dn.RDNs[0].Attributes) != 1 ||
			!strings.EqualFold(dn.RDNs[0].Attributes[0].Type, "uid") {
			return name
		}
		parent := &goldap.DN{RDNs: dn.RDNs[1:]}
		for _, ou := range []string{s.dir.peopleDN(), s.dir.servicesDN()} {
			if p, err := goldap.ParseDN(ou); err == nil && p.EqualFold(parent) {
				return dn.RDNs[0].Attributes[0].Value
			}
		}
		return name
	}
	if at := strings.LastIndexByte(name, '@'); at > 0 {
		return name[:at]
	}
	return name
}

// watch closes the connection when the session its bind rides on is
// revoked (`stepgate session revoke`), so a revoked device stops at once.
func (c *conn) watch(revoked <-chan struct{}) {
	stop := make(chan struct{})
	c.unwatch = stop
	nc := c.nc
	go func() {
		select {
		case <-revoked:
			c.s.log.Info("connection closed: its session was revoked", "remote", nc.RemoteAddr().String())
			nc.Close()
		case <-stop:
		}
	}()
}

func (c *conn) stopWatch() {
	if c.unwatch != nil {
		close(c.unwatch)
		c.unwatch = nil
	}
}

// mayRead reports whether the connection may read the directory.
func (c *conn) mayRead() bool { return c.boundDN != "" || c.s.cfg.AnonymousSearch }

func (c *conn) search(ctx context.Context, id int64, q *searchRequest) error {
	done := func(r result) error { return c.write(encodeResult(id, goldap.ApplicationSearchResultDone, r)) }
	if q.base == "" && q.scope == 0 {
		e := c.s.rootDSE(c.tls)
		if match(q.filter, e) == triTrue {
			if err := c.write(encodeEntry(id, "", selectRootDSE(e, q.attributes), q.typesOnly)); err != nil {
				return err
			}
		}
		return done(result{code: resultSuccess})
	}
	if !c.mayRead() {
		return done(result{code: resultInsufficientAccess, diagnostic: "anonymous search is not allowed: bind first"})
	}
	base, err := goldap.ParseDN(q.base)
	if err != nil {
		return done(result{code: resultInvalidDNSyntax, diagnostic: "invalid base DN"})
	}
	t, err := c.s.dir.snapshot(ctx)
	if err != nil {
		c.s.log.Error("search: directory unavailable", "err", err)
		return done(result{code: resultOther, diagnostic: "internal error"})
	}
	if t.find(base) == nil {
		return done(result{code: resultNoSuchObject, matchedDN: t.matched(base)})
	}
	var stop time.Time
	if q.timeLimit > 0 {
		stop = time.Now().Add(time.Duration(q.timeLimit) * time.Second)
	}
	n := int64(0)
	for _, e := range t.entries {
		if !inScope(e, base, q.scope) || match(q.filter, e) != triTrue {
			continue
		}
		if q.sizeLimit > 0 && n >= q.sizeLimit {
			return done(result{code: resultSizeLimitExceeded})
		}
		if !stop.IsZero() && time.Now().After(stop) {
			return done(result{code: resultTimeLimitExceeded})
		}
		if err := c.queue(encodeEntry(id, e.dn, selectAttributes(e, q.attributes), q.typesOnly)); err != nil {
			return err
		}
		n++
	}
	return done(result{code: resultSuccess})
}

// matched is the DN of the deepest existing entry above dn (the
// matchedDN of a noSuchObject result).
func (t *tree) matched(dn *goldap.DN) string {
	for i := 1; i < len(dn.RDNs); i++ {
		if e := t.find(&goldap.DN{RDNs: dn.RDNs[i:]}); e != nil {
			return e.dn
		}
	}
	return ""
}

func (c *conn) compare(ctx context.Context, q *compareRequest) result {
	if !c.mayRead() {
		return result{code: resultInsufficientAccess, diagnostic: "anonymous compare is not allowed: bind first"}
	}
	dn, err := goldap.ParseDN(q.dn)
	if err != nil {
		return result{code: resultInvalidDNSyntax, diagnostic: "invalid DN"}
	}
	t, err := c.s.dir.snapshot(ctx)
	if err != nil {
		return result{code: resultOther, diagnostic: "internal error"}
	}
	e := t.find(dn)
	if e == nil {
		return result{code: resultNoSuchObject, matchedDN: t.matched(dn)}
	}
	vals := e.values(q.attr)
	if len(vals) == 0 {
		return result{code: resultNoSuchAttribute}
	}
	for _, v := range vals {
		if strings.EqualFold(v, q.value) || (isDNAttribute(q.attr) && sameDN(v, q.value)) {
			return result{code: resultCompareTrue}
		}
	}
	return result{code: resultCompareFalse}
}

// rootDSE is the server's self-description (RFC 4512 5.1).
func (s *Server) rootDSE(onTLS bool) *entry {
	ext := []string{oidWhoAmI}
	if s.tls != nil && !onTLS {
		ext = append(ext, oidStartTLS)
	}
	return &entry{attrs: []attribute{
		{"objectClass", []string{"top"}},
		{"namingContexts", []string{s.dir.baseDN}},
		{"supportedLDAPVersion", []string{"3"}},
		{"supportedExtension", ext},
		{"supportedControl", s.supportedControls()},
		{"supportedSASLMechanisms", nil},
		{"vendorName", []string{"stepgate"}},
	}}
}

// supportedControls are the controls stepgate itself acts on; in proxy
// mode a search's controls are the upstream directory's business.
func (s *Server) supportedControls() []string {
	if s.proxy != nil {
		return []string{oidPasswordPolicy}
	}
	return []string{oidPasswordPolicy, oidManageDsaIT}
}

// selectRootDSE: the root DSE's attributes are operational, but clients
// ask for it with no list or "*" and expect to see them (OpenLDAP wants
// "+"); stepgate shows them for all three.
func selectRootDSE(e *entry, want []string) []attribute {
	all := len(want) == 0
	named := map[string]bool{}
	for _, w := range want {
		if w == "*" || w == "+" {
			all = true
		}
		named[strings.ToLower(w)] = true
	}
	var out []attribute
	for _, a := range e.attrs {
		if len(a.values) > 0 && (all || named[strings.ToLower(a.name)]) {
			out = append(out, a)
		}
	}
	return out
}
