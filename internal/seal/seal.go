// Package seal encrypts secrets at rest with AES-256-GCM under a key kept
// in a file of its own, and derives the other keys stepgate needs from it.
package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/hkdf"
)

// KeySize is the size of a sealing key in bytes (AES-256).
const KeySize = 32

const version byte = 1

// ErrOpen is returned when a sealed value does not open under the key: the
// key is not the one it was sealed with, or the value was altered.
var ErrOpen = errors.New("sealed value does not open with this key")

// Sealer seals and opens values under one key.
type Sealer struct {
	path string
	key  []byte
	aead cipher.AEAD
}

// LoadOrCreate reads the key file at path, creating it with a fresh random
// key (mode 0600) when it does not exist.
func LoadOrCreate(path string) (*Sealer, error) {
	s, err := Load(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return s, err
	}
	key := make([]byte, KeySize)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("sealing key %s: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("sealing key %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		// Another process created it first; use theirs.
		return Load(path)
	}
	if err != nil {
		return nil, fmt.Errorf("sealing key %s: %w", path, err)
	}
	_, werr := f.WriteString(base64.StdEncoding.EncodeToString(key) + "\n")
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("sealing key %s: writing: %w", path, err)
	}
	return New(path, key)
}

// Load reads an existing key file. The file holds the key in base64 on one
// line and must not be readable by group or others.
func Load(path string) (*Sealer, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("sealing key %s: %w", path, err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("sealing key %s: mode %04o lets others read it; chmod 600 it", path, fi.Mode().Perm())
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("sealing key %s: %w", path, err)
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(raw)))
	if err != nil || len(key) != KeySize {
		return nil, fmt.Errorf("sealing key %s: not a base64-encoded %d-byte key", path, KeySize)
	}
	return New(path, key)
}

// New returns a Sealer for key; path only names the key in messages.
func New(path string, key []byte) (*Sealer, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("sealing key %s: %d bytes, want %d", path, len(key), KeySize)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("sealing key %s: %w", path, err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("sealing key %s: %w", path, err)
	}
	return &Sealer{path: path, key: append([]byte(nil), key...), aead: aead}, nil
}

// Path is the key file's path, for messages.
func (s *Sealer) Path() string { return s.path }

// KeyID is a short public fingerprint of the key. A database records it so
// that opening it with another key fails at once, naming the key file,
// rather than producing garbage codes later.
func (s *Sealer) KeyID() string {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte("stepgate key id"))
	return hex.EncodeToString(m.Sum(nil)[:8])
}

// Seal encrypts plaintext. context binds the result to its use (say, the
// row it is stored in): the value opens only with the same context.
func (s *Sealer) Seal(plaintext []byte, context string) ([]byte, error) {
	out := make([]byte, 1+s.aead.NonceSize(), 1+s.aead.NonceSize()+len(plaintext)+s.aead.Overhead())
	out[0] = version
	if _, err := io.ReadFull(rand.Reader, out[1:]); err != nil {
		return nil, fmt.Errorf("seal: nonce: %w", err)
	}
	return s.aead.Seal(out, out[1:], plaintext, []byte(context)), nil
}

// Open decrypts a value made by Seal with the same context.
func (s *Sealer) Open(sealed []byte, context string) ([]byte, error) {
	n := s.aead.NonceSize()
	if len(sealed) < 1+n+s.aead.Overhead() || sealed[0] != version {
		return nil, fmt.Errorf("sealing key %s: %w (not a sealed value)", s.path, ErrOpen)
	}
	pt, err := s.aead.Open(nil, sealed[1:1+n], sealed[1+n:], []byte(context))
	if err != nil {
		return nil, fmt.Errorf("sealing key %s: %w", s.path, ErrOpen)
	}
	return pt, nil
}

// Derive returns a 32-byte key for purpose, derived from the sealing key
// with HKDF-SHA256, so that one file protects every keyed hash stepgate
// keeps (sessions, sent codes) and those survive a restart.
func (s *Sealer) Derive(purpose string) []byte {
	out := make([]byte, 32)
	if _, err := io.ReadFull(hkdf.New(sha256.New, s.key, nil, []byte("stepgate "+purpose)), out); err != nil {
		panic("seal: hkdf: " + err.Error()) // cannot happen for 32 bytes
	}
	return out
}
