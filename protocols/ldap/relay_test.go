package ldap

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	ber "github.com/go-asn1-ber/asn1-ber"
	goldap "github.com/go-ldap/ldap/v3"

	"github.com/stepgate/stepgate/internal/testenv"
	"github.com/stepgate/stepgate/internal/testenv/slapd"
	"github.com/stepgate/stepgate/internal/verifier/verifiertest"
)

// referralLDIF is a referral object (RFC 3296) with two URIs, under
// ou=people.
const referralLDIF = "dn: ou=elsewhere,ou=people," + base + "\nobjectClass: referral\nobjectClass: extensibleObject\nou: elsewhere\n" +
	"ref: ldap://ldap1.example.net/ou=people,dc=example,dc=net\nref: ldap://ldap2.example.net/ou=people,dc=example,dc=net\n\n"

// TestProxyRelaysResponsesAsTheyCame: ldapsearch's full output (response
// controls, search references, referral results, message numbers)
// through stepgate equals slapd's own, for a paged search, a subtree
// search across a referral object and a search based under it, with
// ManageDsaIT off and on. The old proxy re-encoded entries and dropped
// response controls on entries, the second referral URI and the
// referral result's URIs.
func TestProxyRelaysResponsesAsTheyCame(t *testing.T) {
	p := newProxyRigWith(t, verifiertest.Options{}, referralLDIF)
	alice := p.AddEnrolled(t, "alice", "x")
	dn := "uid=alice,ou=people," + base
	stored := "slapd-pass" + alice.Code(t)
	for _, q := range [][]string{
		{"-E", "pr=7/noprompt", "-b", base, "(objectClass=inetOrgPerson)", "uid"},
		{"-b", "ou=people," + base, "(|(uid=alice)(ou=elsewhere))", "uid", "ref"},
		{"-b", "uid=x,ou=elsewhere,ou=people," + base, "(objectClass=*)"},
		{"-M", "-b", "ou=people," + base, "(ou=elsewhere)", "ref"},
		{"-E", "!pr=5/noprompt", "-M", "-b", base, "(|(uid=user1*)(ou=elsewhere))", "ref", "uid"},
	} {
		through := append([]string{"-x", "-H", p.url(), "-D", dn, "-w", stored}, q...)
		direct := append([]string{"-x", "-H", p.sd.URL(), "-D", dn, "-w", "slapd-pass"}, q...)
		rc1, out1 := run(t, nil, "ldapsearch", through...)
		rc2, out2 := run(t, nil, "ldapsearch", direct...)
		if rc1 != rc2 || out1 != out2 {
			t.Errorf("ldapsearch %v:\nthrough stepgate (exit %d):\n%s\ndirect (exit %d):\n%s", q, rc1, out1, rc2, out2)
		}
	}
	// What the equality above covers, said once: the paging control
	// came back, and both referral URIs.
	_, out := run(t, nil, "ldapsearch", "-x", "-H", p.url(), "-D", dn, "-w", stored, "-b", "ou=people,"+base, "(ou=elsewhere)")
	for _, want := range []string{"ldap1.example.net", "ldap2.example.net"} {
		if !strings.Contains(out, want) {
			t.Errorf("search reference through stepgate lacks %s:\n%s", want, out)
		}
	}
	_, out = run(t, nil, "ldapsearch", "-x", "-H", p.url(), "-D", dn, "-w", stored, "-E", "pr=7/noprompt", "-b", base, "(uid=user0*)", "uid")
	if !strings.Contains(out, "pagedresults: cookie=") {
		t.Errorf("paged search through stepgate lacks the paging control:\n%s", out)
	}
}

// searchMessage is a search request with message ID id.
func searchMessage(id int64, baseDN, filter string) []byte {
	m := envelope(id)
	op := ber.Encode(ber.ClassApplication, ber.TypeConstructed, goldap.ApplicationSearchRequest, nil, "Search Request")
	op.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, baseDN, "Base"))
	op.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagEnumerated, 2, "Scope"))
	op.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagEnumerated, 0, "Deref"))
	op.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, 0, "Size"))
	op.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, 0, "Time"))
	op.AppendChild(ber.NewBoolean(ber.ClassUniversal, ber.TypePrimitive, ber.TagBoolean, false, "Types only"))
	f, err := goldap.CompileFilter(filter)
	if err != nil {
		panic(err)
	}
	op.AppendChild(f)
	op.AppendChild(ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "Attributes"))
	m.AppendChild(op)
	return m.Bytes()
}

// TestProxyPipelinedSearchIDs: searches sent back to back, with message
// IDs of every length (one to four bytes, the largest allowed), are each
// answered in order under their own ID.
func TestProxyPipelinedSearchIDs(t *testing.T) {
	p := newProxyRig(t)
	alice := p.AddEnrolled(t, "alice", "x")
	nc, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(20 * time.Second))
	ids := []int64{2, 127, 128, 255, 256, 40000, 1 << 23, 1<<31 - 1, 3}
	var out []byte
	out = append(out, encodeRawBind(1, "uid=alice,ou=people,"+base, "slapd-pass"+alice.Code(t))...)
	for i, id := range ids {
		f := "(uid=user1*)"
		if i%2 == 1 {
			f = "(uid=alice)"
		}
		out = append(out, searchMessage(id, "ou=people,"+base, f)...)
	}
	if _, err := nc.Write(out); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(nc)
	read := func() (int64, ber.Tag) {
		t.Helper()
		pk, err := ber.ReadPacket(br)
		if err != nil {
			t.Fatalf("reading the answers: %v", err)
		}
		id, _ := pk.Children[0].Value.(int64)
		return id, pk.Children[1].Tag
	}
	if id, tag := read(); id != 1 || tag != goldap.ApplicationBindResponse {
		t.Fatalf("first answer: id %d tag %d, want the bind's", id, tag)
	}
	for i, id := range ids {
		want := 10 // user10 .. user19
		if i%2 == 1 {
			want = 1
		}
		entries := 0
		for {
			got, tag := read()
			if got != id {
				t.Fatalf("search %d: a message with ID %d, want %d", i, got, id)
			}
			if tag == goldap.ApplicationSearchResultDone {
				break
			}
			entries++
		}
		if entries != want {
			t.Errorf("search %d (ID %d): %d entries, want %d", i, id, entries, want)
		}
	}
}

// fakeDirectory answers binds with success and every search with bad,
// the bytes bad: a directory gone wrong.
func fakeDirectory(t *testing.T, bad []byte) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			nc, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer nc.Close()
				for {
					pk, err := ber.ReadPacket(nc)
					if err != nil || len(pk.Children) < 2 {
						return
					}
					id := pk.Children[0].Value.(int64)
					switch pk.Children[1].Tag {
					case goldap.ApplicationBindRequest:
						m := envelope(id)
						op := ber.Encode(ber.ClassApplication, ber.TypeConstructed, goldap.ApplicationBindResponse, nil, "")
						appendResult(op, result{code: resultSuccess})
						m.AppendChild(op)
						nc.Write(m.Bytes())
					case goldap.ApplicationSearchRequest:
						nc.Write(bad)
					}
				}
			}()
		}
	}()
	return "ldap://" + l.Addr().String()
}

// TestProxyMalformedUpstreamMessage: a directory that answers a search
// with something that is not an LDAPMessage (or with a message ID
// nobody asked for) costs the one client connection, with a log line;
// other clients go on.
func TestProxyMalformedUpstreamMessage(t *testing.T) {
	entry := func(id int64) []byte {
		m := envelope(id)
		op := ber.Encode(ber.ClassApplication, ber.TypeConstructed, goldap.ApplicationSearchResultEntry, nil, "")
		op.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, "uid=x,"+base, ""))
		op.AppendChild(ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, ""))
		m.AppendChild(op)
		return m.Bytes()
	}
	for _, c := range []struct {
		name string
		bad  []byte
	}{
		{"not a sequence", []byte("HTTP/1.1 400 Bad Request\r\n\r\n")},
		{"no message ID", []byte{0x30, 0x03, 0x04, 0x01, 'x'}},
		{"an ID nobody asked for", entry(relayBase + 12345)},
		{"oversized length", []byte{0x30, 0x84, 0x7f, 0xff, 0xff, 0xff}},
	} {
		t.Run(c.name, func(t *testing.T) {
			up := fakeDirectory(t, c.bad)
			r := newRigWith(t, func(cfg *Config) {
				cfg.Upstream = &Upstream{URLs: []string{up}, PassthroughDNs: []string{"uid=app,ou=people," + base},
					UserAttribute: "uid", Timeout: 5 * time.Second}
			}, nil, verifiertest.Options{})
			other, err := goldap.DialURL(r.url())
			if err != nil {
				t.Fatal(err)
			}
			defer other.Close()
			if err := other.Bind("uid=app,ou=people,"+base, "app-pass"); err != nil {
				t.Fatal(err)
			}
			nc, err := net.Dial("tcp", r.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			nc.SetDeadline(time.Now().Add(10 * time.Second))
			nc.Write(append(encodeRawBind(1, "uid=app,ou=people,"+base, "app-pass"), searchMessage(2, base, "(uid=*)")...))
			br := bufio.NewReader(nc)
			if pk, err := ber.ReadPacket(br); err != nil || pk.Children[1].Tag != goldap.ApplicationBindResponse {
				t.Fatalf("bind answer: %v", err)
			}
			if _, err := io.ReadAll(br); errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatal("the client's connection was not closed after the directory's bad message")
			}
			if !strings.Contains(r.logs.String(), "bad message from the directory") {
				t.Errorf("no log line about the bad message:\n%s", r.logs.String())
			}
			if err := other.Bind("uid=app,ou=people,"+base, "app-pass"); err != nil {
				t.Errorf("another client after the bad message: %v", err)
			}
		})
	}
}

// TestProxyRebindSkipsTheSameUpstreamBind: binding again with the same
// string on a connection already bound upstream as that user does not
// bind upstream again within rebindSkip; a different password does, and
// so does the same one once rebindSkip has passed: a password changed
// upstream is then refused.
func TestProxyRebindSkipsTheSameUpstreamBind(t *testing.T) {
	p := newProxyRig(t)
	alice := p.AddEnrolled(t, "alice", "x")
	dn := "uid=alice,ou=people," + base
	stored := "slapd-pass" + alice.Code(t)
	c, err := goldap.DialURL(p.url())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Bind(dn, stored); err != nil {
		t.Fatal(err)
	}
	before := p.upstreamBinds(dn)
	for i := 0; i < 3; i++ {
		if err := c.Bind(dn, stored); err != nil {
			t.Fatalf("rebind %d: %v", i, err)
		}
	}
	if n := p.upstreamBinds(dn) - before; n != 0 {
		t.Errorf("three rebinds with the same string bound upstream %d times, want 0", n)
	}
	if res, err := c.WhoAmI(nil); err != nil || res.AuthzID != "dn:"+dn {
		t.Fatalf("whoami after the rebinds: %+v, %v", res, err)
	}
	// Another password, with a fresh code: asked upstream (and refused
	// there).
	p.Clock.Advance(time.Minute)
	if err := c.Bind(dn, "other-pass"+alice.Code(t)); !goldap.IsErrorWithCode(err, 49) {
		t.Fatalf("rebind with another password: %v", err)
	}
	if n := p.upstreamBinds(dn) - before; n != 1 {
		t.Errorf("a rebind with another password bound upstream %d times, want 1", n)
	}
	// The password changes upstream; once rebindSkip has passed, the
	// old one is refused on a connection that was bound with it.
	if err := c.Bind(dn, stored); err != nil {
		t.Fatal(err)
	}
	p.sd.Modify("dn: " + dn + "\nchangetype: modify\nreplace: userPassword\nuserPassword: changed-pass\n")
	p.srv.proxy.rebindSkip.Store(0)
	if err := c.Bind(dn, stored); !goldap.IsErrorWithCode(err, 49) {
		t.Fatalf("rebind after the password changed upstream: %v, want invalid credentials", err)
	}
}

// TestProxyRelayOverTLS: the relay reads the upstream's messages above
// TLS, whether the upstream is ldaps:// or ldap:// with StartTLS (which
// the proxy now asks for itself, before go-ldap gets the connection).
func TestProxyRelayOverTLS(t *testing.T) {
	pki := testenv.NewPKI(t)
	sd := slapd.Start(t, slapd.Options{CertFile: pki.CertFile, KeyFile: pki.KeyFile,
		LDIF: slapd.Person{UID: "alice", Password: "slapd-pass"}.LDIF() + referralLDIF})
	ldapsURL := strings.Replace(sd.LDAPSURL(), "127.0.0.1", "localhost", 1)
	startTLSURL := strings.Replace(sd.URL(), "127.0.0.1", "localhost", 1)
	for _, up := range []Upstream{
		{URLs: []string{ldapsURL}, CAFile: pki.CAFile},
		{URLs: []string{startTLSURL}, StartTLS: true, CAFile: pki.CAFile},
	} {
		up.UserAttribute, up.Timeout = "uid", 5*time.Second
		r := newRigWith(t, func(c *Config) { c.Upstream = &up }, nil, verifiertest.Options{})
		alice := r.AddEnrolled(t, "alice", "x")
		dn := "uid=alice,ou=people," + base
		stored := "slapd-pass" + alice.Code(t)
		q := []string{"-b", "ou=people," + base, "(|(uid=alice)(ou=elsewhere))", "uid"}
		rc1, out1 := run(t, nil, "ldapsearch", append([]string{"-x", "-H", r.url(), "-D", dn, "-w", stored}, q...)...)
		rc2, out2 := run(t, []string{"LDAPTLS_CACERT=" + pki.CAFile}, "ldapsearch", append([]string{"-x", "-H", ldapsURL, "-D", dn, "-w", "slapd-pass"}, q...)...)
		if rc1 != 0 || rc1 != rc2 || out1 != out2 {
			t.Errorf("upstream %v StartTLS %v:\nthrough stepgate (exit %d):\n%s\ndirect (exit %d):\n%s", up.URLs, up.StartTLS, rc1, out1, rc2, out2)
		}
	}
}
