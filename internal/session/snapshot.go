package session

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/stepgate/stepgate/internal/username"
)

// snapshot is the short-lived state written at shutdown and read at the
// next start that the store does not hold: codes sent by e-mail or SMS
// and their send budgets. Sessions and failure counters live in the store
// since version 3 (they survive a crash there, and every instance shares
// them); Restore still reads them from a version 1 or 2 snapshot, and
// writes those sessions to the store, so that an upgrade costs nobody a
// code.
type snapshot struct {
	Version  int               `json:"version"`
	Taken    time.Time         `json:"taken"`
	Sessions []snapshotSession `json:"sessions,omitempty"` // up to version 2
	Failures []counter         `json:"failures,omitempty"` // up to version 2
	// Since version 2: a code sent a minute before a restart still works
	// after it, and the send budgets are not refilled by restarting.
	SentCodes []SentCode `json:"sent_codes,omitempty"`
	SendLog   []sendLog  `json:"send_log,omitempty"`
}

type snapshotSession struct {
	ID          string    `json:"id"`
	User        string    `json:"user"`
	Hash        []byte    `json:"hash"`
	Protocol    string    `json:"protocol"`
	Remote      string    `json:"remote"`
	Created     time.Time `json:"created"`
	Expires     time.Time `json:"expires"`
	LastUsed    time.Time `json:"last_used"`
	Epoch       int64     `json:"epoch"`
	PasswordLen int       `json:"password_len"`
}

const snapshotVersion = 3

// Snapshot writes the sent codes and send budgets to w. The output holds
// keyed hashes, never a code, but it is still sealed by the caller before
// it touches the disk.
func (s *Store) Snapshot(w io.Writer) error {
	now := s.now()
	txn := s.db.Txn(false)
	snap := snapshot{Version: snapshotVersion, Taken: now}
	cit, err := txn.Get(tableSentCodes, "id")
	if err != nil {
		return err
	}
	for raw := cit.Next(); raw != nil; raw = cit.Next() {
		if c := raw.(*SentCode); now.Before(c.Expires) {
			snap.SentCodes = append(snap.SentCodes, *c)
		}
	}
	lit, err := txn.Get(tableSendLog, "id")
	if err != nil {
		return err
	}
	for raw := lit.Next(); raw != nil; raw = lit.Next() {
		if l := raw.(*sendLog); now.Before(l.Forget) {
			snap.SendLog = append(snap.SendLog, *l)
		}
	}
	return json.NewEncoder(w).Encode(snap)
}

// Restore loads what Snapshot wrote, leaving out what expired meanwhile.
// It returns the number of sessions restored (from a version 1 or 2
// snapshot; they are written to the store too).
func (s *Store) Restore(r io.Reader) (int, error) {
	var snap snapshot
	if err := json.NewDecoder(io.LimitReader(r, 1<<30)).Decode(&snap); err != nil {
		return 0, fmt.Errorf("session snapshot: %w", err)
	}
	if snap.Version < 1 || snap.Version > snapshotVersion {
		return 0, fmt.Errorf("session snapshot: version %d, this stepgate reads %d", snap.Version, snapshotVersion)
	}
	now := s.now()
	s.sessMu.Lock()
	txn := s.db.Txn(true)
	unlocked := false
	// Aborting after a commit does nothing; the unlock is once either way.
	defer func() {
		txn.Abort()
		if !unlocked {
			s.sessMu.Unlock()
		}
	}()
	var restored []*Session
	for _, x := range snap.Sessions {
		if len(x.Hash) != len(Key{}) || x.ID == "" || x.User == "" {
			return 0, fmt.Errorf("session snapshot: malformed session")
		}
		if c, err := username.Canonical(x.User); err == nil {
			x.User = c // written before names were kept in their canonical form
		}
		sess := &Session{ID: x.ID, User: x.User, Hash: string(x.Hash), Protocol: x.Protocol, Remote: x.Remote,
			Created: x.Created, Expires: x.Expires, Epoch: x.Epoch, PasswordLen: x.PasswordLen}
		sess.lastUsed.Store(x.LastUsed.UnixNano())
		if s.expired(sess, now) {
			continue
		}
		if raw, _ := txn.First(tableSessions, "id", sess.Hash); raw != nil {
			continue
		}
		if err := txn.Insert(tableSessions, sess); err != nil {
			return 0, fmt.Errorf("session snapshot: %w", err)
		}
		restored = append(restored, sess)
	}
	for i := range snap.Failures {
		c := snap.Failures[i]
		if err := txn.Insert(tableFailures, &c); err != nil {
			return 0, fmt.Errorf("session snapshot: %w", err)
		}
	}
	for i := range snap.SentCodes {
		c := snap.SentCodes[i]
		if c.Hash == "" || c.User == "" || !now.Before(c.Expires) {
			continue
		}
		if err := txn.Insert(tableSentCodes, &c); err != nil {
			return 0, fmt.Errorf("session snapshot: %w", err)
		}
	}
	for i := range snap.SendLog {
		l := snap.SendLog[i]
		if l.Key == "" || !now.Before(l.Forget) {
			continue
		}
		if err := txn.Insert(tableSendLog, &l); err != nil {
			return 0, fmt.Errorf("session snapshot: %w", err)
		}
	}
	txn.Commit()
	for _, sess := range restored {
		s.link(sess)
	}
	s.sessMu.Unlock()
	unlocked = true
	n := len(restored)
	s.live.Add(int64(n))
	if s.durable != nil {
		for _, sess := range restored {
			if !s.expired(sess, now) {
				ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
				err := s.durable.SaveSession(ctx, sess.Record())
				cancel()
				if err != nil {
					return n, fmt.Errorf("session snapshot: %w", err)
				}
			}
		}
	}
	return n, nil
}
