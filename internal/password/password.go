// Package password hashes new passwords with argon2id and verifies the
// hash formats that accounts imported from a directory or another system
// carry: bcrypt, LDAP's {SSHA}, {SSHA256} and {SSHA512}, {CRYPT} with
// sha512-crypt or sha256-crypt (glibc's "$6$" and "$5$"), and {ARGON2}
// (OpenLDAP's argon2 module: argon2i or argon2id).
package password

import (
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"strings"

	"github.com/GehirnInc/crypt/sha256_crypt"
	"github.com/GehirnInc/crypt/sha512_crypt"
	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

// Params are argon2id cost parameters.
type Params struct {
	Memory  uint32 // KiB
	Time    uint32
	Threads uint8
	SaltLen int
	KeyLen  uint32
}

// DefaultParams follow the OWASP password storage recommendation for
// argon2id (19 MiB, 2 passes, 1 lane).
var DefaultParams = Params{Memory: 19 * 1024, Time: 2, Threads: 1, SaltLen: 16, KeyLen: 32}

// ErrMismatch is returned when a password does not match its hash.
var ErrMismatch = errors.New("password does not match")

// ErrUnknownScheme is returned for a hash in a format this package cannot
// verify. The error never contains the hash itself.
var ErrUnknownScheme = errors.New("unsupported password hash scheme")

// Hash returns an argon2id hash of pw in the PHC string format.
func Hash(pw string) (string, error) { return HashWith(pw, DefaultParams) }

// HashWith is Hash with explicit cost parameters.
func HashWith(pw string, p Params) (string, error) {
	salt := make([]byte, p.SaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("password salt: %w", err)
	}
	key := argon2.IDKey([]byte(pw), salt, p.Time, p.Memory, p.Threads, p.KeyLen)
	enc := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, p.Memory, p.Time, p.Threads, enc.EncodeToString(salt), enc.EncodeToString(key)), nil
}

// HashSSHA returns an LDAP {SSHA} hash (salted SHA-1) of pw. It exists for
// tests and for benchmarks that compare with a directory using the same
// scheme; new accounts get argon2id.
func HashSSHA(pw string) (string, error) {
	salt := make([]byte, 8)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("password salt: %w", err)
	}
	h := sha1.New()
	h.Write([]byte(pw))
	h.Write(salt)
	return "{SSHA}" + base64.StdEncoding.EncodeToString(append(h.Sum(nil), salt...)), nil
}

// Verify reports whether pw matches hash: nil on a match, ErrMismatch on a
// mismatch, another error when the hash cannot be read. Every comparison
// of derived keys runs in constant time.
func Verify(hash, pw string) error {
	switch sch, rest := split(hash); sch {
	case "argon2id", "argon2i":
		return verifyArgon2(rest, pw)
	case "bcrypt":
		err := bcrypt.CompareHashAndPassword([]byte(rest), []byte(pw))
		if errors.Is(err, bcrypt.ErrMismatchedHashAndPassword) {
			return ErrMismatch
		}
		if err != nil {
			return fmt.Errorf("bcrypt hash: %w", err)
		}
		return nil
	case "ssha", "ssha256", "ssha512":
		return verifySaltedSHA(sch, rest, pw)
	case "sha512-crypt", "sha256-crypt":
		if err := checkCrypt(rest); err != nil {
			return err
		}
		c := sha512_crypt.New()
		if sch == "sha256-crypt" {
			c = sha256_crypt.New()
		}
		// Verify recomputes the hash string and compares it with
		// subtle.ConstantTimeCompare.
		if err := c.Verify(rest, []byte(pw)); err != nil {
			return ErrMismatch
		}
		return nil
	}
	return ErrUnknownScheme
}

// Check reports whether hash is in a scheme Verify can check, with
// parameters in range, without hashing anything: an import of many
// accounts checks every hash before it writes one. The error never
// contains the hash.
func Check(hash string) error {
	sch, rest := split(hash)
	switch sch {
	case "argon2id", "argon2i":
		_, err := parseArgon2(rest)
		return err
	case "bcrypt":
		cost, err := bcrypt.Cost([]byte(rest))
		if err != nil {
			return fmt.Errorf("bcrypt hash: %w", err)
		}
		if len(rest) != 60 {
			return fmt.Errorf("bcrypt hash: %d characters, want 60", len(rest))
		}
		if cost > maxBcryptCost {
			return fmt.Errorf("bcrypt hash: cost %d is above %d (each sign-in would take seconds)", cost, maxBcryptCost)
		}
		return nil
	case "ssha", "ssha256", "ssha512":
		_, _, err := parseSaltedSHA(sch, rest)
		return err
	case "sha512-crypt", "sha256-crypt":
		return checkCrypt(rest)
	}
	return unknownScheme(hash)
}

// unknownScheme says which scheme was refused, by its name alone.
func unknownScheme(hash string) error {
	if h, ok := cutFold(hash, "{CRYPT}"); ok {
		id := "DES crypt"
		if strings.HasPrefix(h, "$") {
			if i := strings.Index(h[1:], "$"); i >= 0 && i < 8 {
				id = "crypt $" + h[1:1+i] + "$"
			}
		}
		switch id {
		case "crypt $1$":
			id += " (md5-crypt)"
		case "crypt $y$":
			id += " (yescrypt)"
		}
		return fmt.Errorf("%w: {CRYPT} with %s; {CRYPT} is accepted with $6$ (sha512-crypt), $5$ (sha256-crypt) or bcrypt", ErrUnknownScheme, id)
	}
	if strings.HasPrefix(hash, "{") {
		if i := strings.Index(hash, "}"); i > 0 && i < 16 {
			return fmt.Errorf("%w: %s; accepted are {SSHA}, {SSHA256}, {SSHA512}, {CRYPT}, {ARGON2}, bcrypt and argon2id", ErrUnknownScheme, hash[:i+1])
		}
	}
	return fmt.Errorf("%w: accepted are {SSHA}, {SSHA256}, {SSHA512}, {CRYPT}, {ARGON2}, bcrypt and argon2id", ErrUnknownScheme)
}

// Limits on a hash's own cost parameters: an imported hash decides how
// long each of its sign-ins hashes, and the hashing limiter bounds how
// many run at once, not how long one takes.
const (
	maxBcryptCost  = 14
	maxCryptRounds = 1_000_000
)

// Scheme names the scheme of hash ("argon2id", "argon2i", "bcrypt", "ssha",
// "ssha256", "ssha512", "sha512-crypt", "sha256-crypt"), or "unknown". It
// never returns any part of the hash.
func Scheme(hash string) string {
	sch, _ := split(hash)
	return sch
}

// split names hash's scheme and returns what that scheme's check reads:
// the hash without an LDAP "{SCHEME}" prefix where the check has no use
// for it. LDAP scheme names are case-insensitive.
func split(hash string) (scheme, rest string) {
	if h, ok := cutFold(hash, "{CRYPT}"); ok {
		hash = h
	} else if h, ok := cutFold(hash, "{ARGON2}"); ok {
		// OpenLDAP's argon2 module: argon2i by default, argon2id if built so.
		if strings.HasPrefix(h, "$argon2i$") {
			return "argon2i", h
		}
		hash = h
	}
	switch {
	case strings.HasPrefix(hash, "$argon2id$"):
		return "argon2id", hash
	case strings.HasPrefix(hash, "$2a$"), strings.HasPrefix(hash, "$2b$"), strings.HasPrefix(hash, "$2y$"):
		return "bcrypt", hash
	case strings.HasPrefix(hash, "$6$"):
		return "sha512-crypt", hash
	case strings.HasPrefix(hash, "$5$"):
		return "sha256-crypt", hash
	}
	for _, s := range []string{"SSHA", "SSHA256", "SSHA512"} {
		if h, ok := cutFold(hash, "{"+s+"}"); ok && h != "" {
			return strings.ToLower(s), h
		}
	}
	return "unknown", ""
}

func cutFold(s, prefix string) (string, bool) {
	if len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix) {
		return s[len(prefix):], true
	}
	return s, false
}

// checkCrypt reads the rounds of a sha-crypt hash ("$6$rounds=N$salt$key",
// rounds optional) and refuses a malformed hash or one too costly.
func checkCrypt(h string) error {
	f := strings.Split(h, "$")
	// "", "6", ["rounds=N",] salt, key
	if len(f) == 5 {
		r, ok := strings.CutPrefix(f[2], "rounds=")
		n, err := strconv.Atoi(r)
		if !ok || err != nil || n < 1000 {
			return fmt.Errorf("crypt $%s$ hash: bad rounds field", f[1])
		}
		if n > maxCryptRounds {
			return fmt.Errorf("crypt $%s$ hash: %d rounds is above %d (each sign-in would take seconds)", f[1], n, maxCryptRounds)
		}
		f = append(f[:2], f[3:]...)
	}
	if len(f) != 4 || len(f[2]) == 0 || len(f[2]) > 16 {
		return fmt.Errorf("crypt $%s$ hash: want $%[1]s$[rounds=N$]salt$key with a salt of 1 to 16 characters", f[1])
	}
	want := 86
	if f[1] == "5" {
		want = 43
	}
	if len(f[3]) != want || strings.Trim(f[3], "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz") != "" {
		return fmt.Errorf("crypt $%s$ hash: the key is not %d characters of crypt's base64", f[1], want)
	}
	return nil
}

type argon2Hash struct {
	id        bool // argon2id, else argon2i
	m, t      uint32
	p         uint8
	salt, key []byte
}

func parseArgon2(hash string) (*argon2Hash, error) {
	// $argon2id$v=19$m=19456,t=2,p=1$salt$key
	f := strings.Split(hash, "$")
	if len(f) != 6 {
		return nil, fmt.Errorf("argon2 hash: %d fields, want 6", len(f))
	}
	var h argon2Hash
	h.id = f[1] == "argon2id"
	if f[2] != "v="+strconv.Itoa(argon2.Version) {
		return nil, fmt.Errorf("argon2 hash: unsupported version field")
	}
	if _, err := fmt.Sscanf(f[3], "m=%d,t=%d,p=%d", &h.m, &h.t, &h.p); err != nil {
		return nil, fmt.Errorf("argon2 hash: parameters: %w", err)
	}
	if h.m == 0 || h.t == 0 || h.p == 0 || h.m > 4*1024*1024 || h.t > 64 {
		return nil, fmt.Errorf("argon2 hash: parameters out of range")
	}
	enc := base64.RawStdEncoding
	var err error
	if h.salt, err = enc.DecodeString(f[4]); err != nil {
		return nil, fmt.Errorf("argon2 hash: salt: %w", err)
	}
	h.key, err = enc.DecodeString(f[5])
	if err != nil || len(h.key) < 16 || len(h.key) > 128 {
		return nil, fmt.Errorf("argon2 hash: bad key")
	}
	return &h, nil
}

func verifyArgon2(hash, pw string) error {
	h, err := parseArgon2(hash)
	if err != nil {
		return err
	}
	derive := argon2.Key
	if h.id {
		derive = argon2.IDKey
	}
	got := derive([]byte(pw), h.salt, h.t, h.m, h.p, uint32(len(h.key)))
	if subtle.ConstantTimeCompare(got, h.key) != 1 {
		return ErrMismatch
	}
	return nil
}

// saltedSHA is the digest behind each LDAP salted-SHA scheme.
var saltedSHA = map[string]struct {
	name string
	new  func() hash.Hash
	size int
}{
	"ssha":    {"{SSHA}", sha1.New, sha1.Size},
	"ssha256": {"{SSHA256}", sha256.New, sha256.Size},
	"ssha512": {"{SSHA512}", sha512.New, sha512.Size},
}

// parseSaltedSHA reads base64(digest || salt), as slappasswd and
// OpenLDAP's pw-sha2 module write it.
func parseSaltedSHA(scheme, b64 string) (digest, salt []byte, err error) {
	s := saltedSHA[scheme]
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(raw) <= s.size {
		return nil, nil, fmt.Errorf("%s hash: not base64 of a digest and a salt", s.name)
	}
	return raw[:s.size], raw[s.size:], nil
}

func verifySaltedSHA(scheme, b64, pw string) error {
	digest, salt, err := parseSaltedSHA(scheme, b64)
	if err != nil {
		return err
	}
	h := saltedSHA[scheme].new()
	h.Write([]byte(pw))
	h.Write(salt)
	if subtle.ConstantTimeCompare(h.Sum(nil), digest) != 1 {
		return ErrMismatch
	}
	return nil
}
