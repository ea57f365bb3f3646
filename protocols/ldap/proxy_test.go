package ldap

import (
	"fmt"
	"strings"
	"testing"
	"time"

	goldap "github.com/go-ldap/ldap/v3"

	"github.com/stepgate/stepgate/internal/testenv/slapd"
	"github.com/stepgate/stepgate/internal/verifier/verifiertest"
)

// proxyRig is stepgate in proxy mode in front of a real slapd.
type proxyRig struct {
	*rig
	sd *slapd.Server
}

func newProxyRig(t *testing.T) *proxyRig {
	t.Helper()
	return newProxyRigWith(t, verifiertest.Options{})
}

// newProxyRigWith is newProxyRig with the verifier's and the session
// store's configuration changed by opts.
func newProxyRigWith(t *testing.T, opts verifiertest.Options, extraLDIF ...string) *proxyRig {
	t.Helper()
	var ldif strings.Builder
	ldif.WriteString(slapd.Person{UID: "alice", CN: "Alice Liddell", Mail: "alice@example.org", Password: "slapd-pass"}.LDIF())
	ldif.WriteString(slapd.Person{UID: "app", Password: "app-pass"}.LDIF())
	for i := 0; i < 50; i++ {
		ldif.WriteString(slapd.Person{UID: fmt.Sprintf("user%02d", i), Mail: fmt.Sprintf("user%02d@example.org", i), Password: fmt.Sprintf("user%02d-pass", i)}.LDIF())
	}
	for _, x := range extraLDIF {
		ldif.WriteString(x)
	}
	sd := slapd.Start(t, slapd.Options{LDIF: ldif.String()})
	r := newRigWith(t, func(c *Config) {
		c.Upstream = &Upstream{URLs: []string{"ldap://127.0.0.1:1", sd.URL()}, // the first is dead: failover
			PassthroughDNs: []string{"uid=app,ou=people," + base}, UserAttribute: "uid", Timeout: 5 * time.Second}
	}, nil, opts)
	return &proxyRig{rig: r, sd: sd}
}

func (p *proxyRig) upstreamBinds(dn string) int {
	return strings.Count(p.sd.Log(), `BIND dn="`+dn+`" method=128`)
}

func TestProxyBinds(t *testing.T) {
	p := newProxyRig(t)
	alice := p.AddEnrolled(t, "alice", "not-used-in-proxy-mode")
	dn := "uid=alice,ou=people," + base
	code := alice.Code(t)

	before := p.upstreamBinds(dn)
	if rc, out := p.whoami(t, dn, "slapd-pass"+wrongCode(code)); rc != 49 {
		t.Fatalf("wrong code: exit %d, want 49: %s", rc, out)
	}
	if n := p.upstreamBinds(dn); n != before {
		t.Fatalf("a wrong code reached slapd (%d binds)", n-before)
	}
	if rc, out := p.whoami(t, dn, "wrong-pass"+code); rc != 49 {
		t.Fatalf("wrong password: exit %d, want 49: %s", rc, out)
	}
	stored := "slapd-pass" + code
	rc, out := p.whoami(t, dn, stored)
	if rc != 0 || !strings.Contains(out, "dn:"+dn) {
		t.Fatalf("password+code through the proxy: exit %d: %s", rc, out)
	}
	// The session: a plain name, after the code rolled over; the
	// password is still checked upstream on every connection.
	p.Clock.Advance(10 * time.Minute)
	if rc, out := p.whoami(t, "alice", stored); rc != 0 || !strings.Contains(out, "dn:"+dn) {
		t.Fatalf("plain name with the stored string: exit %d: %s", rc, out)
	}
	// A passthrough DN binds upstream with its password alone.
	if rc, out := p.whoami(t, "uid=app,ou=people,"+base, "app-pass"); rc != 0 || !strings.Contains(out, "dn:uid=app,ou=people,") {
		t.Fatalf("passthrough DN: exit %d: %s", rc, out)
	}
	if rc, _ := p.whoami(t, "uid=app,ou=people,"+base, "wrong"); rc != 49 {
		t.Fatalf("passthrough DN with a wrong password: exit %d, want 49", rc)
	}

	// slapd down: unavailable, stepgate stays up; back: binds work.
	p.sd.Stop()
	if rc, out := p.whoami(t, dn, stored); rc != 52 {
		t.Fatalf("slapd stopped: exit %d, want 52 (unavailable): %s", rc, out)
	}
	if err := p.srv.Probe(t.Context()); err == nil {
		t.Error("Probe says a stopped directory is up")
	}
	p.sd.Start()
	if rc, out := p.whoami(t, dn, stored); rc != 0 {
		t.Fatalf("slapd back: exit %d: %s", rc, out)
	}
}

func TestProxySearchEqualsDirect(t *testing.T) {
	p := newProxyRig(t)
	alice := p.AddEnrolled(t, "alice", "x")
	dn := "uid=alice,ou=people," + base
	stored := "slapd-pass" + alice.Code(t)
	for i, q := range [][]string{
		{"-b", base, "(objectClass=inetOrgPerson)", "-E", "pr=10/noprompt"},
		{"-b", base, "(|(uid=alice)(mail=user1*))", "uid", "mail", "cn"},
		{"-b", "ou=people," + base, "-s", "one", "(!(uid=user*))"},
		{"-b", "ou=nowhere," + base, "(objectClass=*)"},
		{"-b", base, "-z", "5", "(uid=user*)"},
	} {
		through := append([]string{"-x", "-LLL", "-H", p.url(), "-D", dn, "-w", stored}, q...)
		direct := append([]string{"-x", "-LLL", "-H", p.sd.URL(), "-D", dn, "-w", "slapd-pass"}, q...)
		rc1, out1 := run(t, nil, "ldapsearch", through...)
		rc2, out2 := run(t, nil, "ldapsearch", direct...)
		if i == 0 && strings.Count(out1, "dn: ") != 52 {
			t.Errorf("paged search through stepgate found %d entries, want 52:\n%s", strings.Count(out1, "dn: "), out1)
		}
		if rc1 != rc2 || out1 != out2 {
			t.Errorf("ldapsearch %v:\nthrough stepgate (exit %d):\n%s\ndirect (exit %d):\n%s", q, rc1, out1, rc2, out2)
		}
	}
	if rc, _ := run(t, nil, "ldapsearch", "-x", "-H", p.url(), "-b", base, "(uid=alice)"); rc != 50 {
		t.Errorf("anonymous search through the proxy: exit %d, want 50", rc)
	}
}

// TestProxyRebindOnOneConnection: a client that binds again and again on
// one connection reuses its upstream connection, and a failed rebind
// leaves nothing bound.
func TestProxyRebindOnOneConnection(t *testing.T) {
	p := newProxyRig(t)
	alice := p.AddEnrolled(t, "alice", "x")
	dn := "uid=alice,ou=people," + base
	stored := "slapd-pass" + alice.Code(t)
	c, err := goldap.DialURL(p.url())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := 0; i < 3; i++ {
		if err := c.Bind(dn, stored); err != nil {
			t.Fatalf("bind %d: %v", i, err)
		}
	}
	connects := strings.Count(p.sd.Log(), "ACCEPT from")
	for i := 0; i < 3; i++ {
		if err := c.Bind(dn, stored); err != nil {
			t.Fatalf("bind %d: %v", i, err)
		}
	}
	if n := strings.Count(p.sd.Log(), "ACCEPT from") - connects; n != 0 {
		t.Errorf("three rebinds opened %d new upstream connections, want 0", n)
	}
	if err := c.Bind(dn, "wrong-pass"+alice.Code(t)); !goldap.IsErrorWithCode(err, 49) {
		t.Fatalf("rebind with a wrong password: %v", err)
	}
	if res, err := c.WhoAmI(nil); err != nil || res.AuthzID != "" {
		t.Fatalf("after a failed rebind: whoami %+v, %v; want anonymous", res, err)
	}
	if _, err := c.Search(goldap.NewSearchRequest(base, goldap.ScopeWholeSubtree, 0, 0, 0, false, "(uid=alice)", nil, nil)); !goldap.IsErrorWithCode(err, 50) {
		t.Fatalf("search after a failed rebind: %v, want insufficientAccessRights", err)
	}
}
