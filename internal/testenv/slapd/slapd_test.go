package slapd

import (
	"encoding/base32"
	"strings"
	"testing"
	"time"

	goldap "github.com/go-ldap/ldap/v3"
	"github.com/pquerna/otp/totp"
)

func TestPlainAndOTPBinds(t *testing.T) {
	key := []byte("12345678901234567890")
	alice := Person{UID: "alice", Password: "classmate"}
	bob := Person{UID: "bob", Password: "bobsecret", TOTPSecret: key}
	s := Start(t, Options{OTP: true, LDIF: alice.LDIF() + bob.LDIF()})
	bind := func(dn, pw string) error {
		c, err := goldap.DialURL(s.URL())
		if err != nil {
			return err
		}
		defer c.Close()
		return c.Bind(dn, pw)
	}
	if err := bind(alice.DN(), "classmate"); err != nil {
		t.Fatalf("plain bind: %v", err)
	}
	secret := strings.TrimRight(base32.StdEncoding.EncodeToString(key), "=")
	code, _ := totp.GenerateCode(secret, time.Now())
	if err := bind(bob.DN(), "bobsecret"); err == nil {
		t.Fatal("otp user bound without a code")
	}
	if err := bind(bob.DN(), "bobsecret"+code); err != nil {
		t.Fatalf("password+code bind to slapd+otp: %v\n%s", err, s.Log())
	}
	if err := bind(bob.DN(), "bobsecret"+code); err == nil {
		t.Fatal("slapd+otp took the same code twice")
	}
	s.Stop()
	if err := bind(alice.DN(), "classmate"); err == nil {
		t.Fatal("bind to a stopped slapd")
	}
	s.Start()
	if err := bind(alice.DN(), "classmate"); err != nil {
		t.Fatalf("bind after restart: %v", err)
	}
}

// TestMemberOfAndRestrictedReads: groups added through the running server
// give memberOf; every entry has a native entryUUID; anonymous clients
// may bind but read nothing, bound ones read.
func TestMemberOfAndRestrictedReads(t *testing.T) {
	alice := Person{UID: "alice", Password: "classmate"}
	s := Start(t, Options{MemberOf: true, RestrictReads: true, LDIF: alice.LDIF()})
	s.Modify(Group{CN: "2sv", Members: []string{alice.DN()}}.LDIF())
	c, err := goldap.DialURL(s.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	search := func() ([]*goldap.Entry, error) {
		res, err := c.Search(goldap.NewSearchRequest(Suffix, goldap.ScopeWholeSubtree, goldap.NeverDerefAliases, 0, 0, false,
			"(uid=alice)", []string{"entryUUID", "memberOf"}, nil))
		if err != nil {
			return nil, err
		}
		return res.Entries, nil
	}
	if es, err := search(); len(es) != 0 || !goldap.IsErrorWithCode(err, goldap.LDAPResultInsufficientAccessRights) {
		t.Fatalf("anonymous search: %d entries, %v", len(es), err)
	}
	if err := c.Bind(alice.DN(), "classmate"); err != nil {
		t.Fatalf("bind under restricted reads: %v", err)
	}
	es, err := search()
	if err != nil || len(es) != 1 || es[0].GetAttributeValue("entryUUID") == "" ||
		!strings.EqualFold(es[0].GetAttributeValue("memberOf"), "cn=2sv,ou=groups,"+Suffix) {
		t.Fatalf("bound search: %+v", es)
	}
}

// TestProxy: a back-ldap slapd passes a user's bind and search on to the
// directory behind it, and a wrong password fails there.
func TestProxy(t *testing.T) {
	alice := Person{UID: "alice", Password: "classmate"}
	real := Start(t, Options{Quiet: true, LDIF: alice.LDIF()})
	px := Start(t, Options{Proxy: real.URL()})
	c, err := goldap.DialURL(px.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Bind(alice.DN(), "wrong"); !goldap.IsErrorWithCode(err, goldap.LDAPResultInvalidCredentials) {
		t.Fatalf("wrong password through back-ldap: %v", err)
	}
	if err := c.Bind(alice.DN(), "classmate"); err != nil {
		t.Fatalf("bind through back-ldap: %v\n%s", err, px.Log())
	}
	res, err := c.Search(goldap.NewSearchRequest("ou=people,"+Suffix, goldap.ScopeSingleLevel, goldap.NeverDerefAliases, 0, 0, false,
		"(uid=alice)", []string{"cn"}, nil))
	if err != nil || len(res.Entries) != 1 || res.Entries[0].GetAttributeValue("cn") != "alice" {
		t.Fatalf("search through back-ldap: %+v, %v\n%s", res, err, px.Log())
	}
}
