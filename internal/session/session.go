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
	"slices"
	"strings"
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

	// The revoked channel is made only when someone watches the session:
	// most sessions are never watched before they expire, and a channel
	// per session was a sixth of a session's heap. mu guards revoked and
	// dead.
	mu      sync.Mutex
	revoked chan struct{}
	dead    bool

	// prev and next link the sessions of one user (Store.byUser), guarded
	// by Store.sessMu: a list costs a session two pointers where a memdb
	// index on the user cost it a radix-tree node and a watch channel.
	prev, next *Session
}

// LastUsed is when the session was last used.
func (s *Session) LastUsed() time.Time { return time.Unix(0, s.lastUsed.Load()) }

// Revoked is closed when the session is revoked (by an administrator or a
// change to the account), never when it merely expires: a connection that
// the session opened is closed on revocation and left alone otherwise.
func (s *Session) Revoked() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.revoked == nil {
		if s.dead {
			return closedChan
		}
		s.revoked = make(chan struct{})
	}
	return s.revoked
}

// closedChan is what Revoked returns for a session revoked before anyone
// watched it.
var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

func (s *Session) revoke() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dead {
		return
	}
	s.dead = true
	if s.revoked != nil {
		close(s.revoked)
	}
}

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

	// sessMu makes a change to the sessions table and to byID and byUser
	// one step: it is held around every write transaction on sessions
	// (always taken before memdb's writer lock), and by readers of the
	// two maps. Lookup, the hot path, reads memdb alone.
	sessMu sync.Mutex
	// byID finds a session by its ID, and byUser (keyed by the lower-case
	// name, as memdb's user index was) heads the list of a user's
	// sessions. Each memdb index cost a session a radix-tree node with its
	// own watch channel (some 400 B); a map entry costs a tenth of that.
	// memdb keeps the one index the hot path needs, by key.
	byID   map[string]*Session
	byUser map[string]*Session
}

const (
	tableSessions = "sessions"
	tableFailures = "failures"
)

func schema() *memdb.DBSchema {
	tables := map[string]*memdb.TableSchema{
		tableSessions: {
			Name: tableSessions,
			// memdb wants its primary index named "id"; here it is the
			// key (Hash), which every sign-in looks up. IDs and users are
			// found through Store.byID and Store.byUser.
			Indexes: map[string]*memdb.IndexSchema{
				"id": {Name: "id", Unique: true, Indexer: &memdb.StringFieldIndex{Field: "Hash"}},
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
		durable: cfg.Durable, instance: newInstance(), inflight: map[string]int{},
		byID: map[string]*Session{}, byUser: map[string]*Session{}}
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
	raw, err := txn.First(tableSessions, "id", string(key[:]))
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
	if raw, err := s.db.Txn(false).First(tableSessions, "id", string(n.Key[:])); err == nil && raw != nil {
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
	s.sessMu.Lock()
	defer s.sessMu.Unlock()
	sess, ok := s.byID[id]
	return sess, ok
}

// List returns the live sessions of user, or of everyone when user is "",
// in the order of their IDs.
func (s *Store) List(user string) []*Session {
	now := s.now()
	var out []*Session
	if user == "" {
		it, err := s.db.Txn(false).Get(tableSessions, "id")
		if err != nil {
			return nil
		}
		for raw := it.Next(); raw != nil; raw = it.Next() {
			if sess := raw.(*Session); !s.expired(sess, now) {
				out = append(out, sess)
			}
		}
	} else {
		s.sessMu.Lock()
		for sess := s.byUser[userKey(user)]; sess != nil; sess = sess.next {
			if !s.expired(sess, now) {
				out = append(out, sess)
			}
		}
		s.sessMu.Unlock()
	}
	slices.SortFunc(out, func(a, b *Session) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// Revoke ends the session with id and closes its Revoked channel.
func (s *Store) Revoke(id string) bool {
	return s.deleteWhere(func() []*Session {
		if sess, ok := s.byID[id]; ok {
			return []*Session{sess}
		}
		return nil
	}) > 0
}

// RevokeUser ends every session of user.
func (s *Store) RevokeUser(user string) int {
	return s.revokeUser(user, func(*Session) bool { return true })
}

// RevokeBefore ends the sessions of user made under an epoch older than
// epoch: the account changed since.
func (s *Store) RevokeBefore(user string, epoch int64) int {
	return s.revokeUser(user, func(sess *Session) bool { return sess.Epoch < epoch })
}

func (s *Store) revokeUser(user string, match func(*Session) bool) int {
	return s.deleteWhere(func() []*Session {
		var victims []*Session
		for sess := s.byUser[userKey(user)]; sess != nil; sess = sess.next {
			if match(sess) {
				victims = append(victims, sess)
			}
		}
		return victims
	})
}

// Drop ends one session without counting it as revoked by an administrator
// (the upstream refused its password, say). Its connections are closed.
func (s *Store) Drop(sess *Session) {
	s.Revoke(sess.ID)
	s.dropStored(sess)
}

// deleteWhere deletes the sessions pick returns (pick runs with sessMu
// held) and closes their Revoked channels.
func (s *Store) deleteWhere(pick func() []*Session) int {
	s.sessMu.Lock()
	victims := pick()
	if len(victims) == 0 {
		s.sessMu.Unlock()
		return 0
	}
	txn := s.db.Txn(true)
	for _, v := range victims {
		if err := txn.Delete(tableSessions, v); err != nil {
			txn.Abort()
			s.sessMu.Unlock()
			return 0
		}
	}
	txn.Commit()
	for _, v := range victims {
		s.unlink(v)
	}
	s.sessMu.Unlock()
	s.live.Add(-int64(len(victims)))
	for _, v := range victims {
		v.revoke()
	}
	return len(victims)
}

// userKey is the key of byUser: names are canonical already, and folding
// case again keeps List and RevokeUser as forgiving as memdb's
// lower-casing user index was.
func userKey(user string) string { return strings.ToLower(user) }

// link adds sess to byID and byUser; sessMu must be held, and sess must
// just have been inserted into memdb.
func (s *Store) link(sess *Session) {
	s.byID[sess.ID] = sess
	k := userKey(sess.User)
	head := s.byUser[k]
	sess.prev, sess.next = nil, head
	if head != nil {
		head.prev = sess
	}
	s.byUser[k] = sess
}

// unlink removes sess from byID and byUser; sessMu must be held.
func (s *Store) unlink(sess *Session) {
	if s.byID[sess.ID] == sess {
		delete(s.byID, sess.ID)
	}
	k := userKey(sess.User)
	switch {
	case sess.prev != nil:
		sess.prev.next = sess.next
	case s.byUser[k] == sess:
		if sess.next != nil {
			s.byUser[k] = sess.next
		} else {
			delete(s.byUser, k)
		}
	default:
		return // not linked
	}
	if sess.next != nil {
		sess.next.prev = sess.prev
	}
	sess.prev, sess.next = nil, nil
}

// Live is the number of sessions held, expired ones not yet swept included.
func (s *Store) Live() int { return int(s.live.Load()) }

// Sweep drops expired sessions and failure counters that no longer matter.
// It returns the number of sessions dropped.
func (s *Store) Sweep() int {
	now := s.now()
	s.sessMu.Lock()
	txn := s.db.Txn(true)
	defer txn.Abort()
	var dead []*Session
	it, err := txn.Get(tableSessions, "id")
	if err != nil {
		s.sessMu.Unlock()
		return 0
	}
	for raw := it.Next(); raw != nil; raw = it.Next() {
		if sess := raw.(*Session); s.expired(sess, now) {
			dead = append(dead, sess)
		}
	}
	for _, d := range dead {
		if txn.Delete(tableSessions, d) == nil {
			s.unlink(d)
		}
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
	s.sessMu.Unlock()
	s.live.Add(-int64(len(dead)))
	s.sweepSentCodes(now)
	s.sweepStored(now)
	return len(dead)
}
