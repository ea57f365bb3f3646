// Package password hashes new passwords with argon2id and verifies the
// hash formats that accounts imported from a directory carry (bcrypt and
// LDAP's {SSHA}).
package password

import (
	"crypto/rand"
	"crypto/sha1"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

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
	switch {
	case strings.HasPrefix(hash, "$argon2id$"):
		return verifyArgon2id(hash, pw)
	case strings.HasPrefix(hash, "$2a$"), strings.HasPrefix(hash, "$2b$"), strings.HasPrefix(hash, "$2y$"):
		err := bcrypt.CompareHashAndPassword([]byte(hash), []byte(pw))
		if errors.Is(err, bcrypt.ErrMismatchedHashAndPassword) {
			return ErrMismatch
		}
		if err != nil {
			return fmt.Errorf("bcrypt hash: %w", err)
		}
		return nil
	case len(hash) > 6 && strings.EqualFold(hash[:6], "{SSHA}"):
		return verifySSHA(hash[6:], pw)
	}
	return ErrUnknownScheme
}

// Scheme names the scheme of hash ("argon2id", "bcrypt", "ssha"), or
// "unknown". It never returns any part of the hash.
func Scheme(hash string) string {
	switch {
	case strings.HasPrefix(hash, "$argon2id$"):
		return "argon2id"
	case strings.HasPrefix(hash, "$2a$"), strings.HasPrefix(hash, "$2b$"), strings.HasPrefix(hash, "$2y$"):
		return "bcrypt"
	case len(hash) > 6 && strings.EqualFold(hash[:6], "{SSHA}"):
		return "ssha"
	}
	return "unknown"
}

func verifyArgon2id(hash, pw string) error {
	// $argon2id$v=19$m=19456,t=2,p=1$salt$key
	f := strings.Split(hash, "$")
	if len(f) != 6 {
		return fmt.Errorf("argon2id hash: %d fields, want 6", len(f))
	}
	if f[2] != "v="+strconv.Itoa(argon2.Version) {
		return fmt.Errorf("argon2id hash: unsupported version field")
	}
	var m, t uint32
	var p uint8
	if _, err := fmt.Sscanf(f[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil {
		return fmt.Errorf("argon2id hash: parameters: %w", err)
	}
	if m == 0 || t == 0 || p == 0 || m > 4*1024*1024 || t > 64 {
		return fmt.Errorf("argon2id hash: parameters out of range")
	}
	enc := base64.RawStdEncoding
	salt, err := enc.DecodeString(f[4])
	if err != nil {
		return fmt.Errorf("argon2id hash: salt: %w", err)
	}
	want, err := enc.DecodeString(f[5])
	if err != nil || len(want) < 16 || len(want) > 128 {
		return fmt.Errorf("argon2id hash: bad key")
	}
	got := argon2.IDKey([]byte(pw), salt, t, m, p, uint32(len(want)))
	if subtle.ConstantTimeCompare(got, want) != 1 {
		return ErrMismatch
	}
	return nil
}

func verifySSHA(b64, pw string) error {
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(raw) <= sha1.Size {
		return fmt.Errorf("{SSHA} hash: not base64 of a digest and a salt")
	}
	digest, salt := raw[:sha1.Size], raw[sha1.Size:]
	h := sha1.New()
	h.Write([]byte(pw))
	h.Write(salt)
	if subtle.ConstantTimeCompare(h.Sum(nil), digest) != 1 {
		return ErrMismatch
	}
	return nil
}
