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
