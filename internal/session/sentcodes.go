package session

import (
	"errors"
	"fmt"
	"strings"
	"time"

	memdb "github.com/hashicorp/go-memdb"
)

// Sent codes and send budgets live here, next to sessions: they are as
// short-lived, and a restart losing them costs a user one more code.
const (
	tableSentCodes = "sent_codes"
	tableSendLog   = "send_log"
)

func sentCodeTables() map[string]*memdb.TableSchema {
	return map[string]*memdb.TableSchema{
		tableSentCodes: {
			Name: tableSentCodes,
			Indexes: map[string]*memdb.IndexSchema{
				"id":   {Name: "id", Unique: true, Indexer: &memdb.StringFieldIndex{Field: "Hash"}},
				"user": {Name: "user", Indexer: &memdb.StringFieldIndex{Field: "User", Lowercase: true}},
			},
		},
		tableSendLog: {
			Name: tableSendLog,
			Indexes: map[string]*memdb.IndexSchema{
				"id": {Name: "id", Unique: true, Indexer: &memdb.StringFieldIndex{Field: "Key"}},
			},
		},
	}
}

// SentCode is a code stepgate sent to a user for one sign-in, kept only
// as a keyed hash that the sender computes. Records are never changed in
// place.
type SentCode struct {
	// Hash is the keyed hash of the user and the code; it is the lookup
	// key, so it must bind the user.
	Hash string
	User string
	// Epoch is the account's epoch when the code was sent: a password
	// change since makes the code worthless.
	Epoch   int64
	Method  int64 // the delivery method it went to, for the audit log
	Created time.Time
	Expires time.Time
}

// ErrCodeExists is returned by PutSentCode when a live code has the same
// hash (the sender draws another code).
var ErrCodeExists = errors.New("a live sent code has the same hash")

// PutSentCode keeps a sent code until it is used or expires.
func (s *Store) PutSentCode(c SentCode) error {
	if c.Hash == "" || c.User == "" || !c.Expires.After(c.Created) {
		return errors.New("session: sent code without hash, user or lifetime")
	}
	txn := s.db.Txn(true)
	defer txn.Abort()
	if raw, err := txn.First(tableSentCodes, "id", c.Hash); err == nil && raw != nil {
		if s.now().Before(raw.(*SentCode).Expires) {
			return ErrCodeExists
		}
	}
	cp := c
	if err := txn.Insert(tableSentCodes, &cp); err != nil {
		return fmt.Errorf("session: %w", err)
	}
	txn.Commit()
	return nil
}

// SentCodeFor returns the live sent code with hash, of user.
func (s *Store) SentCodeFor(user, hash string) (SentCode, bool) {
	raw, err := s.db.Txn(false).First(tableSentCodes, "id", hash)
	if err != nil || raw == nil {
		return SentCode{}, false
	}
	c := raw.(*SentCode)
	if !strings.EqualFold(c.User, user) || !s.now().Before(c.Expires) {
		return SentCode{}, false
	}
	return *c, true
}

// UseSentCode uses up the live sent code with hash. It reports false when
// there is none: it expired, or another attempt used it first.
func (s *Store) UseSentCode(hash string) bool {
	txn := s.db.Txn(true)
	defer txn.Abort()
	raw, err := txn.First(tableSentCodes, "id", hash)
	if err != nil || raw == nil {
		return false
	}
	live := s.now().Before(raw.(*SentCode).Expires)
	if err := txn.Delete(tableSentCodes, raw); err != nil {
		return false
	}
	txn.Commit()
	return live
}

// DropSentCodes forgets every sent code of user; it returns how many.
func (s *Store) DropSentCodes(user string) int {
	txn := s.db.Txn(true)
	defer txn.Abort()
	n, err := txn.DeleteAll(tableSentCodes, "user", user)
	if err != nil {
		return 0
	}
	txn.Commit()
	return n
}

// SentCodes is the number of live sent codes of user.
func (s *Store) SentCodes(user string) int {
	it, err := s.db.Txn(false).Get(tableSentCodes, "user", user)
	if err != nil {
		return 0
	}
	now, n := s.now(), 0
	for raw := it.Next(); raw != nil; raw = it.Next() {
		if now.Before(raw.(*SentCode).Expires) {
			n++
		}
	}
	return n
}

// Budget is a limit on sends: at most Max within Window, counted under
// Key ("user:alice", "addr:192.0.2.7").
type Budget struct {
	Key    string
	Max    int
	Window time.Duration
}

// sendLog is the recent sends counted under one key.
type sendLog struct {
	Key   string
	Times []int64 // unix nanoseconds, oldest first
	// Forget is when the record no longer matters (its newest send has
	// left the longest window it was counted in).
	Forget time.Time
}

// TakeSend spends one send from every budget at once, or from none: it
// reports false, and records nothing, when any of them is used up.
// Budgets may share a key (one a minute and five an hour per user).
func (s *Store) TakeSend(budgets ...Budget) bool {
	now := s.now()
	txn := s.db.Txn(true)
	defer txn.Abort()
	logs := map[string]*sendLog{}
	keep := map[string]int{}
	for _, b := range budgets {
		if b.Max < 1 || b.Window <= 0 {
			return false
		}
		l := logs[b.Key]
		if l == nil {
			l = &sendLog{Key: b.Key}
			if raw, err := txn.First(tableSendLog, "id", b.Key); err == nil && raw != nil {
				old := raw.(*sendLog)
				l.Times = append([]int64(nil), old.Times...)
				l.Forget = old.Forget
			}
			logs[b.Key] = l
		}
		cut := now.Add(-b.Window).UnixNano()
		n := 0
		for _, t := range l.Times {
			if t > cut {
				n++
			}
		}
		if n >= b.Max {
			return false
		}
		keep[b.Key] = max(keep[b.Key], b.Max)
		if f := now.Add(b.Window); f.After(l.Forget) {
			l.Forget = f
		}
	}
	for key, l := range logs {
		l.Times = append(l.Times, now.UnixNano())
		// No budget on this key counts further back than its Max sends.
		if k := keep[key]; len(l.Times) > k {
			l.Times = l.Times[len(l.Times)-k:]
		}
		if err := txn.Insert(tableSendLog, l); err != nil {
			return false
		}
	}
	txn.Commit()
	return true
}

// sweepSentCodes drops expired codes and send logs that no longer count.
func (s *Store) sweepSentCodes(now time.Time) {
	txn := s.db.Txn(true)
	defer txn.Abort()
	var dead []any
	if it, err := txn.Get(tableSentCodes, "id"); err == nil {
		for raw := it.Next(); raw != nil; raw = it.Next() {
			if !now.Before(raw.(*SentCode).Expires) {
				dead = append(dead, raw)
			}
		}
	}
	for _, d := range dead {
		txn.Delete(tableSentCodes, d)
	}
	dead = dead[:0]
	if it, err := txn.Get(tableSendLog, "id"); err == nil {
		for raw := it.Next(); raw != nil; raw = it.Next() {
			if !now.Before(raw.(*sendLog).Forget) {
				dead = append(dead, raw)
			}
		}
	}
	for _, d := range dead {
		txn.Delete(tableSendLog, d)
	}
	txn.Commit()
}
