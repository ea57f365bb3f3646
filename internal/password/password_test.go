package password

import (
	"errors"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// cheap keeps the tests fast; the scheme is the same.
var cheap = Params{Memory: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}

func TestArgon2id(t *testing.T) {
	h, err := HashWith("classmate", cheap)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=64,t=1,p=1$") {
		t.Fatalf("hash %q is not a PHC argon2id string", h)
	}
	if err := Verify(h, "classmate"); err != nil {
		t.Fatalf("right password: %v", err)
	}
	if err := Verify(h, "classmatE"); !errors.Is(err, ErrMismatch) {
		t.Fatalf("wrong password: %v, want ErrMismatch", err)
	}
	h2, _ := HashWith("classmate", cheap)
	if h == h2 {
		t.Fatal("two hashes of one password are equal: salt is not random")
	}
	if Scheme(h) != "argon2id" {
		t.Fatalf("Scheme = %q", Scheme(h))
	}
}

func TestDefaultParamsHash(t *testing.T) {
	h, err := Hash("pw")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(h, "m=19456,t=2,p=1") {
		t.Fatalf("default hash %q does not carry the default parameters", h)
	}
	if err := Verify(h, "pw"); err != nil {
		t.Fatal(err)
	}
}

func TestBcrypt(t *testing.T) {
	b, err := bcrypt.GenerateFromPassword([]byte("classmate"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	if err := Verify(string(b), "classmate"); err != nil {
		t.Fatalf("right password: %v", err)
	}
	if err := Verify(string(b), "nope"); !errors.Is(err, ErrMismatch) {
		t.Fatalf("wrong password: %v", err)
	}
}

func TestSSHA(t *testing.T) {
	// Printed by OpenLDAP 2.5's `slappasswd -h {SSHA} -s secret`.
	const fromSlappasswd = "{SSHA}AObY8gUELMBu7fg8b4YBZUvyRWw06sxv"
	if err := Verify(fromSlappasswd, "secret"); err != nil {
		t.Fatalf("slappasswd hash: %v", err)
	}
	if err := Verify(fromSlappasswd, "Secret"); !errors.Is(err, ErrMismatch) {
		t.Fatalf("slappasswd hash, wrong password: %v", err)
	}
	h, err := HashSSHA("classmate")
	if err != nil {
		t.Fatal(err)
	}
	if err := Verify(h, "classmate"); err != nil {
		t.Fatalf("right password: %v", err)
	}
	if err := Verify(strings.Replace(h, "{SSHA}", "{ssha}", 1), "classmate"); err != nil {
		t.Fatalf("scheme name is case-insensitive in LDAP: %v", err)
	}
	if err := Verify(h, "classmatf"); !errors.Is(err, ErrMismatch) {
		t.Fatalf("wrong password: %v", err)
	}
}

func TestMalformed(t *testing.T) {
	for _, h := range []string{"", "plain", "{SSHA}!!!", "{SSHA}AAAA", "$argon2id$v=19$m=1,t=1$x$y",
		"$argon2id$v=18$m=64,t=1,p=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5a2V5", "$argon2id$v=19$m=0,t=1,p=1$c2FsdA$a2V5"} {
		err := Verify(h, "pw")
		if err == nil || errors.Is(err, ErrMismatch) {
			t.Errorf("Verify(%q) = %v, want a format error", h, err)
		}
		if h != "" && len(h) > 8 && strings.Contains(errString(err), h) {
			t.Errorf("error %q repeats the hash", err)
		}
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
