package session

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/stepgate/stepgate/internal/store"
)

// Durable is where sessions and lockout events live for every instance
// and across crashes; *store.Store has it. Without one, a Store keeps
// everything in memory (tests, tools).
type Durable interface {
	SaveSession(ctx context.Context, sess *store.SessionRecord) error
	SessionByKey(ctx context.Context, key []byte) (*store.SessionRecord, error)
	Sessions(ctx context.Context, user string) ([]store.SessionRecord, error)
	TouchSessions(ctx context.Context, used map[string]time.Time) error
	DeleteSession(ctx context.Context, id string, announce bool) (string, error)
	DeleteUserSessions(ctx context.Context, user string) (int, error)
	SweepSessions(ctx context.Context, now time.Time, idle time.Duration) (int, error)
	RecordFailures(ctx context.Context, events []store.FailureEvent) error
	FailureEvents(ctx context.Context, keys []string, since time.Time, instance string) ([]store.FailureEvent, error)
	PruneFailures(ctx context.Context, before time.Time) error
}

// TouchEvery is how often the last use of sessions is written to the
// store: the idle expiry slides without a write per hit, and a crash or
// another instance sees a use at most this late.
const TouchEvery = 15 * time.Second

// storeTimeout bounds a store read on the sign-in path: a store that does
// not answer must not hold a sign-in longer than this.
const storeTimeout = 2 * time.Second

// Durable reports whether sessions are kept in a store.
func (s *Store) Durable() bool { return s.durable != nil }

// Instance names this process in the lockout log.
func (s *Store) Instance() string { return s.instance }

func newInstance() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Record is what the store keeps of sess.
func (sess *Session) Record() *store.SessionRecord {
	return &store.SessionRecord{ID: sess.ID, User: sess.User, Key: []byte(sess.Hash), Protocol: sess.Protocol,
		Remote: sess.Remote, Created: sess.Created, Expires: sess.Expires, LastUsed: sess.LastUsed(),
		Epoch: sess.Epoch, Whole: sess.Whole}
}

func fromRecord(r *store.SessionRecord) (*Session, error) {
	if len(r.Key) != len(Key{}) || r.ID == "" || r.User == "" {
		return nil, errors.New("session: malformed stored session")
	}
	sess := &Session{ID: r.ID, User: r.User, Hash: string(r.Key), Protocol: r.Protocol, Remote: r.Remote,
		Created: r.Created, Expires: r.Expires, Epoch: r.Epoch, Whole: r.Whole}
	sess.lastUsed.Store(r.LastUsed.UnixNano())
	sess.flushed.Store(r.LastUsed.UnixNano())
	return sess, nil
}

// Load is Lookup that, when this instance does not hold a live session
// for key, looks in the store, where another instance (or this one
// before a crash) may have written it, and caches what it finds. An
// error reading the store is a miss: a first sign-in then needs the
// store anyway.
func (s *Store) Load(ctx context.Context, user string, key Key) (*Session, bool) {
	if sess, ok := s.Lookup(user, key); ok || s.durable == nil {
		return sess, ok
	}
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	r, err := s.durable.SessionByKey(ctx, key[:])
	if err != nil || r.User != user {
		return nil, false
	}
	found, err := fromRecord(r)
	if err != nil {
		return nil, false
	}
	now := s.now()
	if s.expired(found, now) {
		return nil, false
	}
	found.lastUsed.Store(now.UnixNano())
	return s.add(found), true
}

// LiveRecord reports whether a stored session has not ended by the
// rules this store applies (absolute and idle expiry).
func (s *Store) LiveRecord(r *store.SessionRecord) bool {
	now := s.now()
	return now.Before(r.Expires) && now.Sub(r.LastUsed) < s.idle
}

// Prepare makes a session without keeping it anywhere yet: its record is
// written with the sign-in's used code, then Add caches it.
func (s *Store) Prepare(n NewSession) (*Session, error) {
	var id [8]byte
	if _, err := rand.Read(id[:]); err != nil {
		return nil, fmt.Errorf("session id: %w", err)
	}
	now := s.now()
	sess := &Session{
		ID: hex.EncodeToString(id[:]), User: n.User, Hash: string(n.Key[:]), Protocol: n.Protocol, Remote: n.Remote,
		Created: now, Expires: now.Add(s.absolute), Epoch: n.Epoch, PasswordLen: n.PasswordLen, Whole: n.Whole,
	}
	sess.lastUsed.Store(now.UnixNano())
	sess.flushed.Store(now.UnixNano())
	return sess, nil
}

// Add caches sess, which the store already holds. A live session this
// instance holds for the same key and epoch (a racing connection) stays
// and is returned instead; a dead one gives way and is marked revoked.
func (s *Store) Add(sess *Session) *Session { return s.add(sess) }

func (s *Store) add(sess *Session) *Session {
	now := s.now()
	s.sessMu.Lock()
	defer s.sessMu.Unlock()
	txn := s.db.Txn(true)
	defer txn.Abort()
	var replaced *Session
	if raw, err := txn.First(tableSessions, "id", sess.Hash); err == nil && raw != nil {
		old := raw.(*Session)
		if old.ID == sess.ID || (old.User == sess.User && !s.expired(old, now) && old.Epoch == sess.Epoch) {
			old.lastUsed.Store(max(old.lastUsed.Load(), sess.lastUsed.Load()))
			return old
		}
		if err := txn.Delete(tableSessions, old); err != nil {
			return sess
		}
		replaced = old
	}
	// A session with this ID under another key cannot be: IDs are random.
	if err := txn.Insert(tableSessions, sess); err != nil {
		return sess
	}
	txn.Commit()
	s.link(sess)
	if replaced != nil {
		s.unlink(replaced)
		replaced.revoke()
	} else {
		s.live.Add(1)
	}
	return sess
}

// FlushUse writes when sessions were last used, for those used since the
// last flush. The server calls it every TouchEvery and at shutdown.
func (s *Store) FlushUse(ctx context.Context) error {
	if s.durable == nil {
		return nil
	}
	it, err := s.db.Txn(false).Get(tableSessions, "id")
	if err != nil {
		return err
	}
	used := map[string]time.Time{}
	var touched []*Session
	for raw := it.Next(); raw != nil; raw = it.Next() {
		sess := raw.(*Session)
		if t := sess.lastUsed.Load(); t > sess.flushed.Load() {
			used[sess.ID] = time.Unix(0, t)
			touched = append(touched, sess)
		}
	}
	if err := s.durable.TouchSessions(ctx, used); err != nil {
		return err
	}
	for _, sess := range touched {
		t := used[sess.ID].UnixNano()
		for {
			f := sess.flushed.Load()
			if f >= t || sess.flushed.CompareAndSwap(f, t) {
				break
			}
		}
	}
	return nil
}

// RevokeEverywhere ends the session with id on every instance: it is
// deleted from the store, the change is logged for the other instances'
// next poll, and here its connections close at once. found is false when
// neither the store nor this instance knew it.
func (s *Store) RevokeEverywhere(ctx context.Context, id string) (found bool, err error) {
	if s.durable != nil {
		_, err = s.durable.DeleteSession(ctx, id, true)
		switch {
		case err == nil:
			found = true
		case errors.Is(err, store.ErrNotFound):
			err = nil
		default:
			return false, err
		}
	}
	return s.Revoke(id) || found, nil
}

// RevokeUserEverywhere ends every session of user in the store and here;
// the other instances close theirs on their next poll. It returns how
// many sessions ended.
func (s *Store) RevokeUserEverywhere(ctx context.Context, user string) (int, error) {
	local := s.RevokeUser(user)
	if s.durable == nil {
		return local, nil
	}
	n, err := s.durable.DeleteUserSessions(ctx, user)
	return max(n, local), err
}

// Orphans returns the sessions of user this instance holds that the store
// no longer has: revoked on another instance, or dropped there.
func (s *Store) Orphans(ctx context.Context, user string) ([]*Session, error) {
	if s.durable == nil {
		return nil, nil
	}
	held := s.List(user)
	if len(held) == 0 {
		return nil, nil
	}
	stored, err := s.durable.Sessions(ctx, user)
	if err != nil {
		return nil, err
	}
	ids := map[string]bool{}
	for _, r := range stored {
		ids[r.ID] = true
	}
	var out []*Session
	for _, sess := range held {
		if !ids[sess.ID] {
			out = append(out, sess)
		}
	}
	return out, nil
}

// drop removes sess from the store without announcing it (the upstream
// refused its password: every instance finds that out on its own).
func (s *Store) dropStored(sess *Session) {
	if s.durable == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	s.durable.DeleteSession(ctx, sess.ID, false)
}

// sweepStored drops what ended from the store: sessions, and lockout
// events older than any budget looks back.
func (s *Store) sweepStored(now time.Time) {
	if s.durable == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	s.durable.SweepSessions(ctx, now, s.idle)
	s.durable.PruneFailures(ctx, now.Add(-s.limits.lookBack()))
}

// users lists the distinct users of the sessions this instance holds.
func (s *Store) users() []string {
	it, err := s.db.Txn(false).Get(tableSessions, "id")
	if err != nil {
		return nil
	}
	seen := map[string]bool{}
	var out []string
	for raw := it.Next(); raw != nil; raw = it.Next() {
		if u := raw.(*Session).User; !seen[u] {
			seen[u] = true
			out = append(out, u)
		}
	}
	return out
}

// AllOrphans is Orphans for every user this instance holds sessions of.
func (s *Store) AllOrphans(ctx context.Context) ([]*Session, error) {
	var out []*Session
	for _, u := range s.users() {
		o, err := s.Orphans(ctx, u)
		if err != nil {
			return nil, err
		}
		out = append(out, o...)
	}
	return out, nil
}
