package delivery_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stepgate/stepgate/internal/delivery"

	"github.com/stepgate/stepgate/internal/store"
	"github.com/stepgate/stepgate/internal/verifier"
)

// BenchmarkCanSend is the cost step 8 adds to a sign-in without a valid
// code: reading the account's methods (one query, addresses opened).
func BenchmarkCanSend(b *testing.B) {
	r := newRig(b, rigOptions{})
	r.e.AddUser(b, "alice", "pw")
	if _, _, err := r.e.Store.AddMethod(context.Background(), "alice", store.MethodSMS, "+14155550142"); err != nil {
		b.Fatal(err)
	}
	u, _ := r.e.Store.User(context.Background(), "alice")
	ms, _ := r.e.Store.Methods(context.Background(), u.ID)
	r.e.Store.VerifyMethod(context.Background(), ms[0].ID)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if !r.d.Codes.CanSend(context.Background(), u) {
			b.Fatal("cannot send")
		}
	}
}

// BenchmarkSentCodeSignIn is a whole sign-in with a sent code: the
// verifier's decision with the code matched in memdb and used up.
func BenchmarkSentCodeSignIn(b *testing.B) {
	r := newRig(b, rigOptions{config: func(c *delivery.Config) { c.Codes.MinInterval = time.Second; c.Codes.PerHour = 100 }})
	r.e.AddUser(b, "alice", "pw")
	ctx := context.Background()
	m, _, err := r.e.Store.AddMethod(ctx, "alice", store.MethodSMS, "+14155550142")
	if err != nil {
		b.Fatal(err)
	}
	r.e.Store.VerifyMethod(ctx, m.ID)
	r.e.Store.SetTwoStep(ctx, "alice", store.TwoStepActive)
	r.refresh(b)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		r.e.Clock.Advance(37 * time.Second) // under 100 sends an hour
		want(b, r.verify("alice", "pw", fmt.Sprintf("10.0.%d.%d", i/250%250, i%250)), verifier.Deny, verifier.ReasonCodeSent)
		msgs := r.gw.messages()
		code := find(b, smsCode, msgs[len(msgs)-1].Message)
		r.e.Sessions.RevokeUserEverywhere(context.Background(), "alice")
		b.StartTimer()
		want(b, r.verify("alice", "pw"+code, "10.1.0.1"), verifier.Allow, verifier.ReasonCode)
	}
}
