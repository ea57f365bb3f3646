package verifier

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"slices"
	"strings"

	"github.com/stepgate/stepgate/internal/session"
	"github.com/stepgate/stepgate/internal/store"
)

// App passwords are random passwords for one device each: they sign in
// with no code, on the protocols their owner ticked only, and never on
// the portal. They are the answer for a device whose password field is
// too short for a password and a code.

// AppPasswordProtocols are the protocols an app password may be made for.
var AppPasswordProtocols = []string{"imap", "smtp", "pop3", "ldap"}

// AppPasswordHash is the keyed hash an app password is stored and found
// by: HMAC-SHA-256 under key (derived from the sealing key) of the
// account's canonical name and the password without its spaces (it is
// shown in groups of four, and a person may type them either way).
func AppPasswordHash(key []byte, user, password string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(user))
	m.Write([]byte{0})
	m.Write([]byte(strings.ReplaceAll(password, " ", "")))
	return m.Sum(nil)
}

// AppPasswordSession is the string an app password's session on one
// protocol is keyed by, in place of the submitted string: a session made
// by an app password must never be a session hit on another protocol (a
// hit is keyed by the string alone). It is made from the stored hash,
// which only the holder of the password or the store can know, so no
// client can type it, and the portal can find the session to revoke it.
func AppPasswordSession(hash []byte, protocol string) string {
	return "\x00app-password\x00" + hex.EncodeToString(hash) + "\x00" + protocol
}

type appPassword struct {
	id        int64
	hash      []byte
	protocols []string
}

func appPasswords(in []store.AppPassword) []appPassword {
	var out []appPassword
	for _, a := range in {
		out = append(out, appPassword{id: a.ID, hash: a.Hash, protocols: a.Protocols})
	}
	return out
}

// appPassword checks the whole string against the account's app
// passwords, inside admission like every other check (so guesses spend
// the budget). ok is false when the string is none of them. Every
// stored hash is compared, in constant time.
func (v *Verifier) appPassword(ctx context.Context, a *Attempt, acct *account) (Decision, bool) {
	if len(v.appKey) == 0 || len(acct.apps) == 0 || a.Password != nil || a.SetUp {
		// With a password checked upstream, the upstream needs the real
		// password, which an app password is not.
		return Decision{}, false
	}
	h := AppPasswordHash(v.appKey, acct.user.Name, a.Secret)
	var match *appPassword
	for i := range acct.apps {
		if subtle.ConstantTimeCompare(h, acct.apps[i].hash) == 1 && match == nil {
			match = &acct.apps[i]
		}
	}
	if match == nil {
		return Decision{}, false
	}
	if !slices.Contains(match.protocols, a.Protocol) {
		return deny(ReasonAppPasswordProtocol), true
	}
	key := v.sessions.KeyFor(acct.user.Name, AppPasswordSession(match.hash, a.Protocol))
	if sess, ok := v.sessions.Lookup(acct.user.Name, key); ok {
		if sess.Epoch == acct.user.Epoch {
			return Decision{Result: Allow, Reason: ReasonAppPassword, User: acct.user.Name, Session: handle{sess}}, true
		}
		v.sessions.Drop(sess)
	}
	return v.open(ctx, a, acct.user, key, len(a.Secret), true, ReasonAppPassword), true
}

// AppSessionKey is the session key of the app password with hash on
// protocol: the portal finds its sessions by it.
func (v *Verifier) AppSessionKey(user string, hash []byte, protocol string) session.Key {
	return v.sessions.KeyFor(user, AppPasswordSession(hash, protocol))
}
