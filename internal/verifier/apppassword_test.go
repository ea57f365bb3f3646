package verifier_test

import (
	"context"
	"strings"
	"testing"

	"github.com/stepgate/stepgate/internal/session"
	"github.com/stepgate/stepgate/internal/verifier"
	"github.com/stepgate/stepgate/internal/verifier/verifiertest"
)

var appKey = []byte("0123456789abcdef0123456789abcdef")

func addAppPassword(t *testing.T, e *verifiertest.Env, user, pw string, protocols ...string) {
	t.Helper()
	if _, err := e.Store.AddAppPassword(context.Background(), user, "device", verifier.AppPasswordHash(appKey, user, pw), protocols); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Verifier.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestAppPassword: an app password signs in without a code on its
// protocols only (spaces or not), never on the portal, never with an
// upstream password check; its session is no session hit on another
// protocol; guesses at it spend the budget like any other attempt.
func TestAppPassword(t *testing.T) {
	e := newEnv(t, func(c *verifier.Config) { c.AppPasswordKey = appKey })
	e.AddEnrolled(t, "alice", "classmate")
	addAppPassword(t, e, "alice", "abcd efgh ijkl mnop", "imap")
	on := func(protocol, secret string) verifier.Attempt {
		a := attempt("alice", secret)
		a.Protocol = protocol
		return a
	}

	d := verify(e, on("imap", "abcdefghijklmnop"))
	want(t, d, verifier.Allow, verifier.ReasonAppPassword)
	if d.Session == nil {
		t.Fatal("an app password sign-in without a session to revoke")
	}
	// Again, with the spaces: the same session, no new one.
	d2 := verify(e, on("imap", "abcd efgh ijkl mnop"))
	want(t, d2, verifier.Allow, verifier.ReasonAppPassword)
	if d2.Session.SessionID() != d.Session.SessionID() {
		t.Fatal("a second sign-in with the app password made another session")
	}
	// Not ticked: LDAP refuses it, and the IMAP session is no hit there.
	want(t, verify(e, on("ldap", "abcdefghijklmnop")), verifier.Deny, verifier.ReasonAppPasswordProtocol)
	// The portal never takes it (SetUp attempts skip app passwords).
	p := on("portal", "abcdefghijklmnop")
	p.SetUp = true
	if d := verify(e, p); d.Allowed() {
		t.Fatalf("the portal let an app password in: %s", d.Reason)
	}
	// Where the password is checked upstream, the upstream needs the
	// real one: the app password is not even looked at.
	up := on("imap", "abcdefghijklmnop")
	up.Password = rejectAll{}
	if d := verify(e, up); d.Allowed() || d.Reason == verifier.ReasonAppPassword {
		t.Fatalf("an app password with an upstream check: %s/%s", d.Result, d.Reason)
	}

	// Guesses spend alice's budget (5): wrong app passwords lock her out.
	e.Sessions.Reset(session.UserKey("alice"))
	e.Sessions.Reset(session.AddrKey("192.0.2.10"))
	for _, g := range []string{"aaaa", "bbbb", "cccc", "dddd", "eeee"} {
		if d := verify(e, on("imap", strings.Repeat(g, 4))); d.Allowed() {
			t.Fatal("a wrong app password signed in")
		}
	}
	// The right one is locked out too: it is checked inside admission,
	// not before it as a session hit would be.
	want(t, verify(e, on("imap", "abcdefghijklmnop")), verifier.Deny, verifier.ReasonLocked)
}

type rejectAll struct{}

func (rejectAll) CheckPassword(context.Context, string, string) error { return verifier.ErrBadPassword }

// TestSetUp: the portal lets a person without two-step in with the
// password alone, whatever the policy, and opens no session (the string
// then signs in nowhere else); a wrong password is refused; an enrolled
// person needs the code there too.
func TestSetUp(t *testing.T) {
	e := newEnv(t)
	e.AddUser(t, "bob", "bobpw")
	alice := e.AddEnrolled(t, "alice", "classmate")
	setUp := func(user, secret string) verifier.Attempt {
		a := attempt(user, secret)
		a.Protocol, a.SetUp = "portal", true
		return a
	}
	d := verify(e, setUp("bob", "bobpw"))
	want(t, d, verifier.Allow, verifier.ReasonSetUp)
	if d.Session != nil {
		t.Fatal("a set-up sign-in opened a session")
	}
	want(t, verify(e, attempt("bob", "bobpw")), verifier.Deny, verifier.ReasonNotEnrolled)
	want(t, verify(e, setUp("bob", "bobpx")), verifier.Deny, verifier.ReasonBadPassword)
	want(t, verify(e, setUp("alice", "classmate")), verifier.Deny, verifier.ReasonNoCode)
	want(t, verify(e, setUp("alice", "classmate"+alice.Code(t))), verifier.Allow, verifier.ReasonCode)
}
