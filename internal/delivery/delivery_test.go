package delivery_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stepgate/stepgate/internal/credential"
	"github.com/stepgate/stepgate/internal/delivery"
	"github.com/stepgate/stepgate/internal/method"
	"github.com/stepgate/stepgate/internal/notify"
	"github.com/stepgate/stepgate/internal/session"
	"github.com/stepgate/stepgate/internal/store"
	"github.com/stepgate/stepgate/internal/verifier"
)

const remote = "203.0.113.7"

// The old device: password alone fails, a code arrives by e-mail, the
// password with the code appended signs in, once.
func TestEmailedCodeSignsInOnce(t *testing.T) {
	r := newRig(t, rigOptions{})
	alice := r.e.AddEnrolled(t, "alice", "classmate")
	r.addEmail(t, "alice", "alice@example.org", 1)
	if got := r.mail(t, 2).Header("Subject"); !strings.Contains(got, "new way to sign in") {
		t.Fatalf("second mail %q, want the method-added alert", got)
	}

	d := r.verify("alice", "classmate", remote)
	want(t, d, verifier.Deny, verifier.ReasonCodeSent)
	if d.Message != "Security code sent to a***@example.org. Append it to your password." {
		t.Fatalf("message %q", d.Message)
	}
	m := r.mail(t, 3)
	if m.To[0] != "alice@example.org" || !strings.Contains(m.Body(), remote) {
		t.Fatalf("code mail to %q: %q", m.To, m.Body())
	}
	code := find(t, mailCode, m.Body())
	if code == alice.Code(t) {
		t.Skip("the sent code equals the TOTP code (one in a million)")
	}

	ok := r.verify("alice", "classmate"+code, remote)
	want(t, ok, verifier.Allow, verifier.ReasonCode)
	if ok.Session == nil {
		t.Fatal("no session opened")
	}
	// The session carries the same string on; a new one needs a new code.
	want(t, r.verify("alice", "classmate"+code, remote), verifier.Allow, verifier.ReasonSession)
	r.e.Sessions.RevokeUserEverywhere(context.Background(), "alice")
	want(t, r.verify("alice", "classmate"+code, remote), verifier.Deny, verifier.ReasonBadCode)
	// A TOTP code still works beside it.
	want(t, r.verify("alice", "classmate"+alice.NextCode(t), remote), verifier.Allow, verifier.ReasonCode)
}

// An account whose only second factor is a phone: two-step turns on when
// the phone is confirmed, and even under policy allow the password alone
// never signs in; the code arrives by the SMS gateway, and the alert by
// e-mail.
func TestPhoneOnlyAccount(t *testing.T) {
	r := newRig(t, rigOptions{verifier: func(c *verifier.Config) { c.Policy = verifier.PolicyAllow }})
	r.e.AddUser(t, "bob", "bobpw")
	phone := r.addPhone(t, "bob", "+44 7911 123456")
	if phone.Address != "+447911123456" {
		t.Fatalf("phone stored as %q, want E.164", phone.Address)
	}
	if u, _ := r.e.Store.User(context.Background(), "bob"); u.TwoStep != store.TwoStepActive {
		t.Fatalf("two-step %s after confirming a phone, want active", u.TwoStep)
	}
	r.addEmail(t, "bob", "bob@example.org", 1) // alerts go here; codes still to the phone (first verified)

	d := r.verify("bob", "bobpw", remote)
	want(t, d, verifier.Deny, verifier.ReasonCodeSent)
	if d.Message != "Security code sent to ***-***-3456. Append it to your password." {
		t.Fatalf("message %q", d.Message)
	}
	msgs := r.gw.messages()
	last := msgs[len(msgs)-1]
	if last.To != "+447911123456" {
		t.Fatalf("code texted to %q", last.To)
	}
	code := find(t, smsCode, last.Message)
	// The alert: someone signed in with the right password from remote.
	alert := r.mail(t, 3)
	if !strings.Contains(alert.Header("Subject"), "signed in to Example Mail with your password") || !strings.Contains(alert.Body(), remote) ||
		!strings.Contains(alert.Body(), "***-***-3456") || strings.Contains(alert.Body(), code) {
		t.Fatalf("alert %q: %q", alert.Header("Subject"), alert.Body())
	}
	want(t, r.verify("bob", "bobpw"+code, remote), verifier.Allow, verifier.ReasonCode)
}

// The code lives 10 minutes; a password change kills it sooner.
func TestSentCodeExpiry(t *testing.T) {
	r := newRig(t, rigOptions{})
	r.e.AddUser(t, "carol", "carolpw")
	r.addPhone(t, "carol", "+14155550132")
	send := func() string {
		t.Helper()
		want(t, r.verify("carol", "carolpw", remote), verifier.Deny, verifier.ReasonCodeSent)
		msgs := r.gw.messages()
		return find(t, smsCode, msgs[len(msgs)-1].Message)
	}
	code := send()
	r.e.Clock.Advance(10*time.Minute + time.Second)
	want(t, r.verify("carol", "carolpw"+code, remote), verifier.Deny, verifier.ReasonBadCode)

	code = send()
	r.e.Clock.Advance(9 * time.Minute)
	want(t, r.verify("carol", "carolpw"+code, remote), verifier.Allow, verifier.ReasonCode)

	r.e.Clock.Advance(2 * time.Minute)
	code = send()
	if err := r.e.Store.SetPassword(context.Background(), "carol", mustHash(t, "newpw")); err != nil {
		t.Fatal(err)
	}
	r.refresh(t)
	want(t, r.verify("carol", "newpw"+code, remote), verifier.Deny, verifier.ReasonBadCode)
}

// At most one send a minute and five an hour per account, and a budget
// per source; beyond them, the plain generic failure and nothing sent.
func TestThrottles(t *testing.T) {
	r := newRig(t, rigOptions{
		config: func(c *delivery.Config) { c.Codes.PerSourcePerHour = 5 },
		// A throttled attempt is a failure to the lockout; keep it out of
		// the way here.
		sessions: func(c *session.Config) {
			c.Limits = session.Limits{MaxFailures: 100, Window: time.Minute, Lockout: time.Minute, MaxLockout: time.Minute}
		},
	})
	r.e.AddUser(t, "dave", "davepw")
	r.addPhone(t, "dave", "+14155550133")
	texts := func() int { return len(r.gw.messages()) }
	base := texts()
	for i := 0; i < 5; i++ {
		want(t, r.verify("dave", "davepw", remote), verifier.Deny, verifier.ReasonCodeSent)
		d := r.verify("dave", "davepw", remote) // again within the minute
		want(t, d, verifier.Deny, verifier.ReasonNoCode)
		if d.Message != "" {
			t.Fatalf("a throttled attempt shows %q", d.Message)
		}
		r.e.Clock.Advance(61 * time.Second)
	}
	if got := texts() - base; got != 5 {
		t.Fatalf("%d texts, want 5", got)
	}
	// The sixth in the hour: refused.
	want(t, r.verify("dave", "davepw", remote), verifier.Deny, verifier.ReasonNoCode)
	if texts()-base != 5 {
		t.Fatal("a sixth code went out within the hour")
	}
	r.e.Clock.Advance(time.Hour)
	const other = "198.51.100.4"
	want(t, r.verify("dave", "davepw", other), verifier.Deny, verifier.ReasonCodeSent)

	// The source other has spent 1 of 5: another account gets 4 more
	// from it, then none, while a third address still gets one.
	r.e.AddUser(t, "erin", "erinpw")
	r.addPhone(t, "erin", "+14155550134")
	for i := 0; i < 4; i++ {
		want(t, r.verify("erin", "erinpw", other), verifier.Deny, verifier.ReasonCodeSent)
		r.e.Clock.Advance(61 * time.Second)
	}
	want(t, r.verify("erin", "erinpw", other), verifier.Deny, verifier.ReasonNoCode)
	want(t, r.verify("erin", "erinpw", "198.51.100.5"), verifier.Deny, verifier.ReasonCodeSent)
}

// An unknown user and a wrong password never cause a send, and get the
// same answer.
func TestNoSendForUnknownUserOrWrongPassword(t *testing.T) {
	r := newRig(t, rigOptions{})
	r.e.AddEnrolled(t, "alice", "classmate")
	r.addPhone(t, "alice", "+14155550135")
	base := len(r.gw.messages())
	answers := []verifier.Decision{
		r.verify("alice", "wrong", remote),
		r.verify("ghost", "classmate", remote),
		r.verify("ghost", "wrong", remote),
		r.verify("alice", "classmat3", remote),
	}
	for i, d := range answers {
		if d.Allowed() || d.Message != "" || d.Session != nil || d.Result != answers[0].Result {
			t.Fatalf("answer %d differs outside: %+v", i, d)
		}
	}
	if n := len(r.gw.messages()) - base; n != 0 {
		t.Fatalf("%d texts sent for a wrong password or an unknown user", n)
	}
}

// A password that itself ends in six digits still gets a code and signs in.
func TestPasswordEndingInDigits(t *testing.T) {
	r := newRig(t, rigOptions{})
	r.e.AddUser(t, "frank", "hunter123456")
	r.addPhone(t, "frank", "+14155550136")
	want(t, r.verify("frank", "hunter123456", remote), verifier.Deny, verifier.ReasonCodeSent)
	msgs := r.gw.messages()
	code := find(t, smsCode, msgs[len(msgs)-1].Message)
	want(t, r.verify("frank", "hunter123456"+code, remote), verifier.Allow, verifier.ReasonCode)
}

// With a separator and eight-digit codes, sent codes follow the rule.
func TestSeparatorAndEightDigits(t *testing.T) {
	r := newRig(t, rigOptions{verifier: func(c *verifier.Config) { c.Rule = credential.Rule{Digits: 8, Separator: ";"} }})
	r.e.AddUser(t, "gina", "ginapw")
	r.addPhone(t, "gina", "+14155550137")
	d := r.verify("gina", "ginapw", remote)
	want(t, d, verifier.Deny, verifier.ReasonCodeSent)
	if !strings.HasSuffix(d.Message, `Append it to your password after ";".`) {
		t.Fatalf("message %q does not name the separator", d.Message)
	}
	msgs := r.gw.messages()
	code := find(t, smsCode, msgs[len(msgs)-1].Message)
	if len(code) != 8 {
		t.Fatalf("code %q is not 8 digits", code)
	}
	want(t, r.verify("gina", "ginapw;"+code, remote), verifier.Allow, verifier.ReasonCode)
}

// A gateway that fails: retries, then no send and the generic failure;
// the code that went nowhere does not work.
func TestGatewayDownNoSend(t *testing.T) {
	r := newRig(t, rigOptions{})
	r.e.AddUser(t, "hank", "hankpw")
	r.addPhone(t, "hank", "+14155550138")
	before := len(r.gw.messages())
	r.gw.mu.Lock()
	r.gw.fail = func(int) int { return http.StatusInternalServerError }
	r.gw.mu.Unlock()
	d := r.verify("hank", "hankpw", remote)
	want(t, d, verifier.Deny, verifier.ReasonNoCode)
	if d.Message != "" {
		t.Fatalf("a failed send shows %q", d.Message)
	}
	msgs := r.gw.messages()[before:]
	if len(msgs) != 2 { // one attempt and one retry
		t.Fatalf("%d gateway requests, want 2", len(msgs))
	}
	code := find(t, smsCode, strings.TrimPrefix(msgs[0].Message, "FAILED "))
	want(t, r.verify("hank", "hankpw"+code, remote), verifier.Deny, verifier.ReasonBadCode)
	if !strings.Contains(r.log.String(), `"msg":"security code not sent"`) {
		t.Fatalf("the failure is not logged:\n%s", r.log.String())
	}
}

// Recovery codes: ten, shown once, each used once, a new set kills the
// old one, and a use alerts the owner.
func TestRecoveryCodes(t *testing.T) {
	r := newRig(t, rigOptions{})
	r.e.AddEnrolled(t, "ivy", "ivypw")
	r.addEmail(t, "ivy", "ivy@example.org", 1)
	ctx := context.Background()
	codes, err := r.d.Recovery.Generate(ctx, "ivy")
	if err != nil {
		t.Fatal(err)
	}
	if len(codes) != 10 {
		t.Fatalf("%d codes", len(codes))
	}
	for _, c := range codes {
		if !credential.IsRecoveryCode(c) {
			t.Fatalf("%q is not a recovery code", c)
		}
	}
	want(t, r.verify("ivy", "ivypw"+codes[0], remote), verifier.Allow, verifier.ReasonCode)
	alert := r.mail(t, 3)
	if !strings.Contains(alert.Header("Subject"), "recovery code was used") || !strings.Contains(alert.Body(), "9 recovery codes are left") {
		t.Fatalf("alert %q: %q", alert.Header("Subject"), alert.Body())
	}
	r.e.Sessions.RevokeUserEverywhere(context.Background(), "ivy")
	want(t, r.verify("ivy", "ivypw"+codes[0], remote), verifier.Deny, verifier.ReasonBadCode)
	// A wrong password does not use a code up.
	want(t, r.verify("ivy", "nope"+codes[1], remote), verifier.Deny, verifier.ReasonBadPassword)
	if n, _ := r.d.Recovery.Left(ctx, "ivy"); n != 9 {
		t.Fatalf("%d left, want 9", n)
	}
	// Another account's code does not work.
	r.e.AddEnrolled(t, "jack", "jackpw")
	want(t, r.verify("jack", "jackpw"+codes[1], remote), verifier.Deny, verifier.ReasonBadCode)

	fresh, err := r.d.Recovery.Generate(ctx, "ivy")
	if err != nil {
		t.Fatal(err)
	}
	want(t, r.verify("ivy", "ivypw"+codes[1], remote), verifier.Deny, verifier.ReasonBadCode)
	want(t, r.verify("ivy", "ivypw"+fresh[0], remote), verifier.Allow, verifier.ReasonCode)
}

func TestRecoveryCodeAfterSeparator(t *testing.T) {
	r := newRig(t, rigOptions{verifier: func(c *verifier.Config) { c.Rule = credential.Rule{Digits: 6, Separator: ";"} }})
	r.e.AddEnrolled(t, "kim", "kim;pw")
	codes, err := r.d.Recovery.Generate(context.Background(), "kim")
	if err != nil {
		t.Fatal(err)
	}
	want(t, r.verify("kim", "kim;pw"+codes[0], remote), verifier.Deny, verifier.ReasonNoCode)
	want(t, r.verify("kim", "kim;pw;"+codes[0], remote), verifier.Allow, verifier.ReasonCode)
}

// require_backup_method: one authenticator leaves two-step pending (and
// the account cannot sign in under policy deny) until a second way to get
// a code exists.
func TestRequireBackupMethod(t *testing.T) {
	r := newRig(t, rigOptions{config: func(c *delivery.Config) { c.RequireBackupMethod = true }})
	ctx := context.Background()
	lee := r.e.AddEnrolled(t, "lee", "leepw")
	// What the CLI does after enroll.Confirm.
	state, err := r.d.Methods.Settle(ctx, "lee")
	if err != nil || state != store.TwoStepPending {
		t.Fatalf("Settle = %s, %v; want pending", state, err)
	}
	r.refresh(t)
	want(t, r.verify("lee", "leepw"+lee.Code(t), remote), verifier.Deny, verifier.ReasonNotEnrolled)

	if _, err := r.d.Methods.Add(ctx, "lee", store.MethodEmail, "lee@example.org"); err != nil {
		t.Fatal(err)
	}
	c, err := r.d.Methods.Confirm(ctx, "lee", find(t, confirmCode, r.mail(t, 1).Body()))
	if err != nil || c.TwoStep != store.TwoStepActive {
		t.Fatalf("Confirm = %+v, %v; want two-step active", c, err)
	}
	r.refresh(t)
	want(t, r.verify("lee", "leepw"+lee.NextCode(t), remote), verifier.Allow, verifier.ReasonCode)

	// Off (the default), one authenticator is enough.
	r2 := newRig(t, rigOptions{})
	r2.e.AddEnrolled(t, "lee", "leepw")
	if state, _ := r2.d.Methods.Settle(ctx, "lee"); state != store.TwoStepActive {
		t.Fatalf("without the policy: %s", state)
	}
}

// A lockout alerts the owner by e-mail.
func TestLockoutAlert(t *testing.T) {
	r := newRig(t, rigOptions{})
	r.e.AddEnrolled(t, "mia", "miapw")
	r.addEmail(t, "mia", "mia@example.org", 1)
	for i := 0; i < 5; i++ {
		r.verify("mia", "miapw00000"+string(rune('0'+i)), remote)
	}
	alert := r.mail(t, 3)
	if !strings.Contains(alert.Header("Subject"), "paused") || !strings.Contains(alert.Body(), "until") {
		t.Fatalf("alert %q: %q", alert.Header("Subject"), alert.Body())
	}
}

// Turned off, an alert does not go out.
func TestAlertsCanBeTurnedOff(t *testing.T) {
	r := newRig(t, rigOptions{config: func(c *delivery.Config) { c.Alerts = notify.AlertsConfig{} }})
	r.e.AddEnrolled(t, "ned", "nedpw")
	r.addEmail(t, "ned", "ned@example.org", 1)
	codes, _ := r.d.Recovery.Generate(context.Background(), "ned")
	want(t, r.verify("ned", "nedpw"+codes[0], remote), verifier.Allow, verifier.ReasonCode)
	r.d.Close() // waits for anything posted
	if n := len(r.smtp.Mails()); n != 1 {
		t.Fatalf("%d mails, want only the confirmation", n)
	}
}

// Methods: bad numbers are refused clearly; kinds not allowed cannot be
// added; the last factor cannot be removed; wrong confirmation codes run
// out; the primary method decides where codes go.
func TestMethodManagement(t *testing.T) {
	r := newRig(t, rigOptions{config: func(c *delivery.Config) { c.Methods = []store.MethodKind{store.MethodSMS} }})
	ctx := context.Background()
	r.e.AddUser(t, "olga", "olgapw")
	if _, err := r.d.Methods.Add(ctx, "olga", store.MethodSMS, "12345"); err == nil || !strings.Contains(err.Error(), "international form") {
		t.Fatalf("a bad number: %v", err)
	}
	if _, err := r.d.Methods.Add(ctx, "olga", store.MethodEmail, "olga@example.org"); err == nil || !strings.Contains(err.Error(), "may not receive codes") {
		t.Fatalf("a kind that is not allowed: %v", err)
	}
	if _, err := r.d.Methods.Add(ctx, "nobody", store.MethodSMS, "+14155550139"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("an unknown user: %v", err)
	}
	first, err := r.d.Methods.Add(ctx, "olga", store.MethodSMS, "+14155550139")
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < method.MaxConfirmFailures; i++ {
		if _, err := r.d.Methods.Confirm(ctx, "olga", "000000"); !errors.Is(err, method.ErrBadCode) {
			t.Fatalf("a wrong code: %v", err)
		}
	}
	msgs := r.gw.messages()
	if _, err := r.d.Methods.Confirm(ctx, "olga", find(t, smsCode, msgs[len(msgs)-1].Message)); !errors.Is(err, method.ErrBadCode) {
		t.Fatalf("the right code after %d wrong ones: %v", method.MaxConfirmFailures, err)
	}
	// Adding it again sends a new code.
	r.addPhone(t, "olga", "+14155550139")
	if _, err := r.d.Methods.Add(ctx, "olga", store.MethodSMS, "+1 415 555 0139"); !errors.Is(err, method.ErrAlreadyVerified) {
		t.Fatalf("adding a verified number again: %v", err)
	}
	if err := r.d.Methods.Remove(ctx, "olga", first.ID); !errors.Is(err, method.ErrLastFactor) {
		t.Fatalf("removing the only factor: %v", err)
	}
	second := r.addPhone(t, "olga", "+14155550140")
	if err := r.d.Methods.SetPrimary(ctx, "olga", second.ID); err != nil {
		t.Fatal(err)
	}
	want(t, r.verify("olga", "olgapw", remote), verifier.Deny, verifier.ReasonCodeSent)
	if msgs := r.gw.messages(); msgs[len(msgs)-1].To != "+14155550140" {
		t.Fatalf("code went to %q, not the primary", msgs[len(msgs)-1].To)
	}
	if err := r.d.Methods.Remove(ctx, "olga", first.ID); err != nil {
		t.Fatal(err)
	}
	ms, err := r.d.Methods.List(ctx, "olga")
	if err != nil || len(ms) != 1 || ms[0].ID != second.ID {
		t.Fatalf("List = %+v, %v", ms, err)
	}
}

func mustHash(t *testing.T, pw string) string {
	t.Helper()
	h, err := passwordHash(pw)
	if err != nil {
		t.Fatal(err)
	}
	return h
}
