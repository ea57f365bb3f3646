package portal

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"sync"
	"time"

	"github.com/stepgate/stepgate/internal/enroll"
	"github.com/stepgate/stepgate/internal/verifier"
)

// maxSessions bounds the portal sessions held: signing in costs a
// password check and a slot in the budgets, so reaching it takes many
// good passwords; past it the oldest idle goes first.
const maxSessions = 10000

// psession is one person signed in to the portal. It lives in this
// process only: a restart signs everyone out of the portal, which costs
// a sign-in, and no portal secret ever reaches the disk.
type psession struct {
	id   string
	csrf string
	user string
	// epoch is the account's epoch at sign-in: a password change, a
	// disable or a two-step reset signs the portal out too.
	epoch int64
	// revoked is the sign-in's verifier session's, when it opened one:
	// "sign out everywhere" and a revoke from the CLI end the portal
	// session with it.
	revoked <-chan struct{}
	verID   string
	remote  string
	last    time.Time

	// Shown-once secrets, for this session only, dropped when done:
	// the enrollment in progress and the newest recovery codes (for the
	// .txt download and the print view).
	enrolling *enroll.Enrollment
	codes     []string
	codesAt   time.Time
	// flash is a one-time notice for the next page.
	flash string
}

type sessions struct {
	mu   sync.Mutex
	byID map[string]*psession
	idle time.Duration
	now  func() time.Time
}

func newSessions(idle time.Duration, now func() time.Time) *sessions {
	return &sessions{byID: map[string]*psession{}, idle: idle, now: now}
}

func randomToken() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic("portal: random: " + err.Error())
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// create starts a session for user after a good sign-in.
func (ss *sessions) create(user string, epoch int64, d verifier.Decision, remote string) *psession {
	p := &psession{id: randomToken(), csrf: randomToken(), user: user, epoch: epoch, remote: remote, last: ss.now()}
	if d.Session != nil {
		p.revoked, p.verID = d.Session.Revoked(), d.Session.SessionID()
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if len(ss.byID) >= maxSessions {
		ss.sweepLocked()
		var oldest *psession
		for _, x := range ss.byID {
			if oldest == nil || x.last.Before(oldest.last) {
				oldest = x
			}
		}
		if oldest != nil && len(ss.byID) >= maxSessions {
			delete(ss.byID, oldest.id)
		}
	}
	ss.byID[p.id] = p
	return p
}

// get returns the live session with id, sliding its idle time.
func (ss *sessions) get(id string) (*psession, bool) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	p, ok := ss.byID[id]
	if !ok {
		return nil, false
	}
	now := ss.now()
	if now.Sub(p.last) >= ss.idle || closed(p.revoked) {
		delete(ss.byID, id)
		return nil, false
	}
	p.last = now
	return p, true
}

func (ss *sessions) drop(id string) {
	ss.mu.Lock()
	delete(ss.byID, id)
	ss.mu.Unlock()
}

// with runs fn on p under the lock: the secrets shown once are read and
// dropped by concurrent requests of one person.
func (ss *sessions) with(p *psession, fn func(p *psession)) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	fn(p)
}

func (ss *sessions) sweep() {
	ss.mu.Lock()
	ss.sweepLocked()
	ss.mu.Unlock()
}

func (ss *sessions) sweepLocked() {
	now := ss.now()
	for id, p := range ss.byID {
		if now.Sub(p.last) >= ss.idle || closed(p.revoked) {
			delete(ss.byID, id)
		}
	}
}

func closed(c <-chan struct{}) bool {
	if c == nil {
		return false
	}
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// sameToken compares a submitted token with the expected one in constant
// time; an empty expected token matches nothing.
func sameToken(got, want string) bool {
	return want != "" && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}
