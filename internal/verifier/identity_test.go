package verifier_test

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stepgate/stepgate/internal/session"
	"github.com/stepgate/stepgate/internal/verifier"
)

// TestNameForms: every form of a name that the profile folds is the same
// account; forms it rejects are refused; none of them makes the real
// account unknown afterwards (the cache and the store agree).
func TestNameForms(t *testing.T) {
	e := newEnv(t)
	alice := e.AddEnrolled(t, "Alice", "classmate") // stored as "alice"
	kate := e.AddEnrolled(t, "kate", "katepw")
	for _, form := range []string{"alice", "ALICE", "ａｌｉｃｅ", "ＡＬＩＣＥ", "AlIcE"} {
		d := verify(e, attempt(form, "classmate"))
		want(t, d, verifier.Deny, verifier.ReasonNoCode) // enrolled: a code is needed, whatever the form
		e.Sessions.Reset(session.UserKey("alice"))
		e.Sessions.Reset(session.AddrKey("192.0.2.10"))
	}
	for _, form := range []string{"alice ", " alice", "al ice", "alice\x00", "alice\u200b", "\u00a0alice", "alice\t"} {
		want(t, verify(e, attempt(form, "classmate"+alice.Code(t))), verifier.Deny, verifier.ReasonBadName)
		e.Sessions.Reset(session.AddrKey("192.0.2.10"))
	}
	// KELVIN SIGN folds to k: the same account, not an unknown one
	// cached in front of the real kate.
	want(t, verify(e, attempt("\u212Aate", "katepx")), verifier.Deny, verifier.ReasonNoCode)
	d := verify(e, attempt("kate", "katepw"+kate.Code(t)))
	want(t, d, verifier.Allow, verifier.ReasonCode)
	if d.User != "kate" {
		t.Fatalf("signed in as %q", d.User)
	}
	// A session made under one form is hit under another.
	want(t, verify(e, attempt("ＫＡＴＥ", "katepw"+kate.Code(t))), verifier.Allow, verifier.ReasonSession)
	if !strings.Contains(e.AuditLog(), `"sent_name":"ＫＡＴＥ"`) {
		t.Fatal("the audit event does not keep the form the client sent")
	}
}

// identityUpstream is an upstream password check that also says whom it
// authenticated, as an LDAP directory does.
type identityUpstream struct {
	upstream
	who []string
}

func (u *identityUpstream) Identity(context.Context) ([]string, error) { return u.who, nil }

// TestUpstreamIdentity: under policy allow, a name stepgate does not know
// is let in with the password alone only when the upstream did not take
// it for an enrolled account; an enrolled sign-in whose upstream bind
// landed on another account fails and does not burn the code.
func TestUpstreamIdentity(t *testing.T) {
	e := newEnv(t, func(c *verifier.Config) { c.Policy = verifier.PolicyAllow })
	alice := e.AddEnrolled(t, "alice", "unused")
	up := &identityUpstream{upstream: upstream{pw: "classmate"}, who: []string{"alice"}}
	a := func(name, s string) verifier.Attempt { x := attempt(name, s); x.Password = up; return x }

	// "uid=alice\20": the front end sends a name stepgate does not know;
	// the directory bound alice. Password alone: refused.
	want(t, verify(e, a("alice.x", "classmate")), verifier.Deny, verifier.ReasonIdentity)
	// A name the directory maps to itself is a roll-out user.
	up.who = []string{"Bob"}
	want(t, verify(e, a("bob", "classmate")), verifier.Allow, verifier.ReasonPasswordOnly)
	// Several values of the user attribute: all must be the account.
	up.who = []string{"carol", "alice"}
	want(t, verify(e, a("carol", "classmate")), verifier.Deny, verifier.ReasonIdentity)
	up.who = nil
	want(t, verify(e, a("dave", "classmate")), verifier.Deny, verifier.ReasonIdentity)

	// Enrolled alice with her code, but the bind landed on mallory.
	e.Sessions.Reset(session.AddrKey("192.0.2.10"))
	code := alice.Code(t)
	up.who = []string{"mallory"}
	want(t, verify(e, a("alice", "classmate"+code)), verifier.Deny, verifier.ReasonIdentity)
	// The failure is remembered for that string; forget it to show that
	// the code itself was not used.
	e.Sessions.Reset(session.UserKey("alice"))
	up.who = []string{"alice"}
	want(t, verify(e, a("alice", "classmate"+code)), verifier.Allow, verifier.ReasonCode)
}

// slowUpstream counts the password checks and makes each take a while,
// so that concurrent attempts overlap.
type slowUpstream struct{ calls atomic.Int32 }

func (u *slowUpstream) CheckPassword(context.Context, string, string) error {
	u.calls.Add(1)
	time.Sleep(20 * time.Millisecond)
	return verifier.ErrBadPassword
}

// TestAdmissionBoundsConcurrentGuesses: 64 wrong passwords (with the right
// code) and 64 wrong codes at once against one user: at most the budget
// is evaluated, the rest are locked out, and the right password is never
// answered with anything but a lockout.
func TestAdmissionBoundsConcurrentGuesses(t *testing.T) {
	e := newEnv(t)
	alice := e.AddEnrolled(t, "alice", "classmate")
	up := &slowUpstream{}
	code := alice.Code(t)
	var wg sync.WaitGroup
	var mu sync.Mutex
	reasons := map[verifier.Reason]int{}
	for i := 0; i < 128; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			x := attempt("alice", "guess"+string(rune('a'+i%26))+code)
			if i%2 == 1 {
				x = attempt("alice", "classmate"+wrongCode(code))
			}
			x.Password = up
			x.Remote = "192.0.2." + string(rune('0'+i%8)) // many addresses, one user
			d := verify(e, x)
			mu.Lock()
			reasons[d.Reason]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	// Refused unevaluated: locked out, or the same string as a failure
	// already counted (the wrong codes are all one string).
	evaluated := 128 - reasons[verifier.ReasonLocked] - reasons[verifier.ReasonRepeated]
	if evaluated > 5 {
		t.Fatalf("%d of 128 concurrent guesses evaluated (%v), want at most 5", evaluated, reasons)
	}
	if n := up.calls.Load(); n > 5 {
		t.Fatalf("%d password checks ran, want at most 5", n)
	}
	want(t, verify(e, attempt("alice", "classmate"+alice.NextCode(t))), verifier.Deny, verifier.ReasonLocked)
}

func wrongCode(code string) string { return wrongCodeN(code, 1) }

// wrongCodeN is the n-th of nine wrong codes next to code: distinct
// guesses, since a repeated string counts once.
func wrongCodeN(code string, n int) string {
	b := []byte(code)
	b[0] = '0' + (b[0]-'0'+byte(n))%10
	return string(b)
}
