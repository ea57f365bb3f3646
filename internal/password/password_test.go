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

// TestImportedSchemes checks hashes printed by the tools that made them:
// OpenLDAP's slappasswd (with its pw-sha2 module for {SSHA256} and
// {SSHA512}, and {CRYPT} through glibc) and OpenSSL's passwd.
func TestImportedSchemes(t *testing.T) {
	for _, c := range []struct{ scheme, hash string }{
		// slappasswd -o module-load=pw-sha2 -h {SSHA512} -s secret
		{"ssha512", "{SSHA512}8LHM15pb41m9MAI7NtVFEAuC51ZKSYafiryaqTyj5TDONN/mYXxPo5yRwIBrNdweIy5UNei3wjQVexD7cdcv0swrO2OyZLUf"},
		// slappasswd -o module-load=pw-sha2 -h {SSHA256} -s secret
		{"ssha256", "{SSHA256}Euu3v1V7PwInkqhMNwUdAdO17e5vJXMY3Smn79bhUKKwYX00SvUz3A=="},
		// slappasswd -h {CRYPT} -c '$6$rounds=5000$%.16s' -s secret
		{"sha512-crypt", "{CRYPT}$6$rounds=5000$t59hU6ZLlNl4NKa6$0pTLlRfNDJgHrpdm5B06juBW9sSsrwxCuLKbJGAIKb9Zv0MPBPTLgycgMY/VDXvCsbl7mCla0775t82VzMeUX."},
		// slappasswd -h {CRYPT} -c '$6$%.16s' -s secret
		{"sha512-crypt", "{crypt}$6$SBWHSOI4Fc9sxjZe$bdbKCqcTU.5AiA02XgweCZzWxRO9TB6KTyG1.bw5rALV2ZVn6QT1cWeMMqtGU1QfHUqRzH8y6ugPmGk2BMgqB/"},
		// openssl passwd -6 -salt saltsaltsalt secret (as /etc/shadow has it)
		{"sha512-crypt", "$6$saltsaltsalt$PMWE8DTlam1JU37Piyk43bHcMxTJq6sgu5DKB0/tGPjanN35jcY68QkpDfPFUGPWX5uCxIQkSPzMmqEiVNgts."},
		// slappasswd -o module-load=argon2 -h {ARGON2} -s secret (Debian's: argon2i)
		{"argon2i", "{ARGON2}$argon2i$v=19$m=4096,t=3,p=1$jMT6Ehqq3i2xjvH6SwCVOA$thJ2Wvb8KDWEGaAXE9GIYfDGDPUwTTkzTbjdjTqntqA"},
		// openssl passwd -5 -salt saltsalt secret
		{"sha256-crypt", "$5$saltsalt$0IyaXrmV7.sGNS6tirgqHLqX/G.FBvgkYA.lpPdS5sA"},
	} {
		if got := Scheme(c.hash); got != c.scheme {
			t.Errorf("Scheme(%.20s...) = %q, want %q", c.hash, got, c.scheme)
		}
		if err := Check(c.hash); err != nil {
			t.Errorf("Check(%.20s...): %v", c.hash, err)
		}
		if err := Verify(c.hash, "secret"); err != nil {
			t.Errorf("Verify(%.20s..., right password): %v", c.hash, err)
		}
		if err := Verify(c.hash, "Secret"); !errors.Is(err, ErrMismatch) {
			t.Errorf("Verify(%.20s..., wrong password): %v, want ErrMismatch", c.hash, err)
		}
	}
}

// TestCheckRefuses: Check names what is wrong with a hash (never the hash
// itself) and hashes nothing.
func TestCheckRefuses(t *testing.T) {
	b, _ := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	for _, c := range []struct{ hash, want string }{
		{"{MD5}Xr4ilOzQ4PCOq3aQ0qbuaQ==", "{MD5}"},
		{"{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=", "{SHA}"},
		{"{CRYPT}$1$abcdefgh$ABCDEFGHIJKLMNOPQRSTUV", "md5-crypt"},
		{"{CRYPT}$y$j9T$abc$def", "yescrypt"},
		{"{CRYPT}abJnggxhB/yWI", "DES crypt"},
		{"plain text", "accepted are"},
		{"", "accepted are"},
		{"{SSHA}", "accepted are"},
		{"{SSHA}!!!!", "not base64"},
		{"{SSHA512}" + "c2hvcnQ=", "not base64 of a digest"},
		{"$6$rounds=99999999$salt$" + strings.Repeat("a", 86), "above 1000000"},
		{"$6$salt$short", "not 86 characters"},
		{"$6$rounds=x$salt$" + strings.Repeat("a", 86), "bad rounds"},
		{"$argon2id$v=19$m=0,t=1,p=1$c2FsdA$a2V5", "out of range"},
		{strings.Replace(string(b), "$04$", "$31$", 1), "above 14"},
	} {
		err := Check(c.hash)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Check(%q) = %v, want an error with %q", c.hash, err, c.want)
			continue
		}
		if c.hash != "" && len(c.hash) > 12 && strings.Contains(err.Error(), c.hash[len(c.hash)-8:]) {
			t.Errorf("Check(%q) = %v: the error shows the hash", c.hash, err)
		}
	}
	h, _ := HashWith("pw", cheap)
	for _, ok := range []string{h, string(b), "{CRYPT}" + string(b)} {
		if err := Check(ok); err != nil {
			t.Errorf("Check(%.12s...): %v", ok, err)
		}
	}
}
