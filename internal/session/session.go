// Package session keeps stepgate's short-lived state in memory with
// hashicorp/go-memdb: sign-in sessions, and failure counters per user and
// per source address.
package session

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"sync"
	"sync/atomic"
	"time"

	memdb "github.com/hashicorp/go-memdb"
)

// Defaults for Config.
const (
	DefaultIdle     = 30 * time.Minute
	DefaultAbsolute = 7 * 24 * time.Hour
)

// Config configures a Store.
type Config struct {
	// HashKey keys the hash of submitted strings; at least 32 bytes.
	HashKey []byte
	// Idle ends a session not used for this long (sliding). Default 30 min.
	Idle time.Duration
	// Absolute ends a session this long after it was made. Default 7 days.
	Absolute time.Duration
	// Limits is the lockout policy for failure counters.
	Limits Limits
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Durable, when set, keeps sessions and the lockout log for every
	// instance and across crashes; memory is then its cache.
	Durable Durable
}

// Key is the keyed hash of a user name and a submitted string. The string
// itself is never kept.
type Key [16]byte

// Session is proof that a user passed two-step verification with a given
// submitted string. A client that sends the same string again (a mail app
// reconnecting) is let in without a new code until the session ends.
type Session struct {
	ID       string
	User     string
	Hash     string // string(Key), the lookup index
	Protocol string
	Remote   string
	Created  time.Time
	Expires  time.Time // absolute expiry
	// Epoch is the account's security epoch when the session was made; a
	// later password change, reset, disable or revoke kills the session.
	Epoch int64
	// PasswordLen is how much of the submitted string is the password (the
	// rest was the code), so that a backend that must see the password on
	// every connection can be given it. The store does not keep it: a
	// session read from there has 0, and the split rule (or Whole) finds
	// the password again in the string that hit it.
	PasswordLen int
	// Whole is true when the whole string is the password.
	Whole bool

	// lastUsed (unix nanoseconds) slides the idle expiry. It is the one
	// field changed in place: it is not indexed, and writing a new memdb
	// object on every hit would put a write transaction on the hottest path.
	lastUsed atomic.Int64
	flushed  atomic.Int64 // the last use written to the store
	revoked  chan struct{}
	once     sync.Once
}

// LastUsed is when the session was last used.
func (s *Session) LastUsed() time.Time { return time.Unix(0, s.lastUsed.Load()) }

// Revoked is closed when the session is revoked (by an administrator or a
// change to the account), never when it merely expires: a connection that
// the session opened is closed on revocation and left alone otherwise.
func (s *Session) Revoked() <-chan struct{} { return s.revoked }

func (s *Session) revoke() { s.once.Do(func() { close(s.revoked) }) }

// Store holds sessions and failure counters.
type Store struct {
	db       *memdb.MemDB
	now      func() time.Time
	idle     time.Duration
	absolute time.Duration
	limits   Limits
	hashers  sync.Pool
	live     atomic.Int64
	durable  Durable
	instance string
	// admitMu guards inflight, and makes Admit's check and a Done's count
	// one step for the budgets (failures.go).
	admitMu sync.Mutex
	// inflight is how many admitted attempts per key are still being
	// evaluated. They hold their slot in the budget until they end, so
	// that 64 guesses sent at once cannot all be evaluated before the
	// first failure is counted. Nothing is in flight across a restart, so
	// a snapshot has none of it.
	inflight map[string]int
}

const (
	tableSessions = "sessions"
	tableFailures = "failures"
)

func schema() *memdb.DBSchema {
	tables := map[string]*memdb.TableSchema{
		tableSessions: {
			Name: tableSessions,
			Indexes: map[string]*memdb.IndexSchema{
				"id":   {Name: "id", Unique: true, Indexer: &memdb.StringFieldIndex{Field: "ID"}},
				"hash": {Name: "hash", Unique: true, Indexer: &memdb.StringFieldIndex{Field: "Hash"}},
				"user": {Name: "user", Indexer: &memdb.StringFieldIndex{Field: "User", Lowercase: true}},
			},
		},
		tableFailures: {
			Name: tableFailures,
			Indexes: map[string]*memdb.IndexSchema{
				"id": {Name: "id", Unique: true, Indexer: &memdb.StringFieldIndex{Field: "Key"}},
			},
		},
	}
	for name, t := range sentCodeTables() {
		tables[name] = t
	}
	return &memdb.DBSchema{Tables: tables}
}

// New returns an empty Store.
func New(cfg Config) (*Store, error) {
	if len(cfg.HashKey) < 32 {
		return nil, errors.New("session: hash key shorter than 32 bytes")
	}
	if cfg.Idle == 0 {
		cfg.Idle = DefaultIdle
	}
	if cfg.Absolute == 0 {
		cfg.Absolute = DefaultAbsolute
	}
	if cfg.Idle < 0 || cfg.Absolute < 0 {
		return nil, errors.New("session: negative lifetime")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	limits, err := cfg.Limits.withDefaults()
	if err != nil {
		return nil, err
	}
	db, err := memdb.NewMemDB(schema())
	if err != nil {
		return nil, fmt.Errorf("session: %w", err)
	}
	key := append([]byte(nil), cfg.HashKey...)
	s := &Store{db: db, now: cfg.Now, idle: cfg.Idle, absolute: cfg.Absolute, limits: limits,
		durable: cfg.Durable, instance: newInstance(), inflight: map[string]int{}}
	s.hashers.New = func() any { return hmac.New(sha256.New, key) }
	return s, nil
}

// KeyFor hashes a user name and a submitted string under the store's key.
// Like every name the store is given, user is the account's canonical
// name (package username): one account, one form, one key.
func (s *Store) KeyFor(user, secret string) Key {
	h := s.hashers.Get().(hash.Hash)
	h.Reset()
	var buf [sha256.Size]byte
	h.Write([]byte(user))
	h.Write([]byte{0})
	h.Write([]byte(secret))
	sum := h.Sum(buf[:0])
	s.hashers.Put(h)
	var k Key
	copy(k[:], sum)
	return k
}

func (s *Store) expired(sess *Session, now time.Time) bool {
	return !now.Before(sess.Expires) || now.Sub(sess.LastUsed()) >= s.idle
}

// Lookup finds the live session of user for key and marks it used. An
// expired session is not returned (the sweeper drops it later).
func (s *Store) Lookup(user string, key Key) (*Session, bool) {
	txn := s.db.Txn(false)
	raw, err := txn.First(tableSessions, "hash", string(key[:]))
	if err != nil || raw == nil {
		return nil, false
	}
	sess := raw.(*Session)
	now := s.now()
	if sess.User != user || s.expired(sess, now) {
		return nil, false
	}
	sess.lastUsed.Store(now.UnixNano())
	return sess, true
}

// NewSession describes a session to create.
type NewSession struct {
	User        string
	Key         Key
	Protocol    string
	Remote      string
	Epoch       int64
	PasswordLen int
	Whole       bool
}

// Create makes a session, or returns the live one that already exists for
// the same user and key (a second connection that raced the first). With
// a store, the session is written there before it is returned.
func (s *Store) Create(n NewSession) (*Session, error) {
	return s.CreateContext(context.Background(), n)
}

// CreateContext is Create with the context of the store write.
func (s *Store) CreateContext(ctx context.Context, n NewSession) (*Session, error) {
	now := s.now()
	if raw, err := s.db.Txn(false).First(tableSessions, "hash", string(n.Key[:])); err == nil && raw != nil {
		old := raw.(*Session)
		if old.User == n.User && !s.expired(old, now) && old.Epoch == n.Epoch {
			old.lastUsed.Store(now.UnixNano())
			return old, nil
		}
	}
	sess, err := s.Prepare(n)
	if err != nil {
		return nil, err
	}
	if s.durable != nil {
		if err := s.durable.SaveSession(ctx, sess.Record()); err != nil {
			return nil, fmt.Errorf("session: %w", err)
		}
	}
	return s.add(sess), nil
}

// Get returns the session with id, live or not yet swept.
func (s *Store) Get(id string) (*Session, bool) {
	raw, err := s.db.Txn(false).First(tableSessions, "id", id)
	if err != nil || raw == nil {
		return nil, false
	}
	return raw.(*Session), true
}

// List returns the live sessions of user, or of everyone when user is "".
func (s *Store) List(user string) []*Session {
	txn := s.db.Txn(false)
	var it memdb.ResultIterator
	var err error
	if user == "" {
		it, err = txn.Get(tableSessions, "id")
	} else {
		it, err = txn.Get(tableSessions, "user", user)
	}
	if err != nil {
		return nil
	}
	now := s.now()
	var out []*Session
	for raw := it.Next(); raw != nil; raw = it.Next() {
		if sess := raw.(*Session); !s.expired(sess, now) {
			out = append(out, sess)
		}
	}
	return out
}

// Revoke ends the session with id and closes its Revoked channel.
func (s *Store) Revoke(id string) bool {
	return s.deleteWhere(func(txn *memdb.Txn) (memdb.ResultIterator, error) {
		return txn.Get(tableSessions, "id", id)
	}, nil) > 0
}

// RevokeUser ends every session of user.
func (s *Store) RevokeUser(user string) int {
	return s.deleteWhere(func(txn *memdb.Txn) (memdb.ResultIterator, error) {
		return txn.Get(tableSessions, "user", user)
	}, nil)
}

// RevokeBefore ends the sessions of user made under an epoch older than
// epoch: the account changed since.
func (s *Store) RevokeBefore(user string, epoch int64) int {
	return s.deleteWhere(func(txn *memdb.Txn) (memdb.ResultIterator, error) {
		return txn.Get(tableSessions, "user", user)
	}, func(sess *Session) bool { return sess.Epoch < epoch })
}

// Drop ends one session without counting it as revoked by an administrator
// (the upstream refused its password, say). Its connections are closed.
func (s *Store) Drop(sess *Session) {
	s.Revoke(sess.ID)
	s.dropStored(sess)
}

func (s *Store) deleteWhere(get func(*memdb.Txn) (memdb.ResultIterator, error), keep func(*Session) bool) int {
	txn := s.db.Txn(true)
	defer txn.Abort()
	it, err := get(txn)
	if err != nil {
		return 0
	}
	var victims []*Session
	for raw := it.Next(); raw != nil; raw = it.Next() {
		sess := raw.(*Session)
		if keep == nil || keep(sess) {
			victims = append(victims, sess)
		}
	}
	for _, v := range victims {
		if err := txn.Delete(tableSessions, v); err != nil {
			return 0
		}
	}
	txn.Commit()
	s.live.Add(-int64(len(victims)))
	for _, v := range victims {
		v.revoke()
	}
	return len(victims)
}

// Live is the number of sessions held, expired ones not yet swept included.
func (s *Store) Live() int { return int(s.live.Load()) }

// Sweep drops expired sessions and failure counters that no longer matter.
// It returns the number of sessions dropped.
func (s *Store) Sweep() int {
	now := s.now()
	txn := s.db.Txn(true)
	defer txn.Abort()
	var dead []*Session
	it, err := txn.Get(tableSessions, "id")
	if err != nil {
		return 0
	}
	for raw := it.Next(); raw != nil; raw = it.Next() {
		if sess := raw.(*Session); s.expired(sess, now) {
			dead = append(dead, sess)
		}
	}
	for _, d := range dead {
		txn.Delete(tableSessions, d)
	}
	var stale []*counter
	fit, err := txn.Get(tableFailures, "id")
	if err == nil {
		for raw := fit.Next(); raw != nil; raw = fit.Next() {
			if c := raw.(*counter); s.limits.forgettable(c, now) {
				stale = append(stale, c)
			}
		}
	}
	for _, c := range stale {
		txn.Delete(tableFailures, c)
	}
	txn.Commit()
	s.live.Add(-int64(len(dead)))
	s.sweepSentCodes(now)
	s.sweepStored(now)
	return len(dead)
}
