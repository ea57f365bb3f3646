package store

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// TestAppPasswords: added, listed, found with the account for a sign-in
// decision, deleted only by their owner; every change is in the account
// change log, so that every instance drops the cached account.
func TestAppPasswords(t *testing.T) {
	eachDialect(t, func(t *testing.T, db *testDB) {
		ctx := context.Background()
		s := db.open(t)
		alice, err := s.AddUser(ctx, NewUser{Name: "alice", PasswordHash: "x"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.AddUser(ctx, NewUser{Name: "bob", PasswordHash: "x"}); err != nil {
			t.Fatal(err)
		}
		gen, _ := s.Generation(ctx)
		a, err := s.AddAppPassword(ctx, "ALICE", "printer", []byte("hash-1"), []string{"ldap", "imap"})
		if err != nil {
			t.Fatal(err)
		}
		if a.UserID != alice.ID || fmt.Sprint(a.Protocols) != "[imap ldap]" {
			t.Fatalf("added %+v", a)
		}
		if _, err := s.AddAppPassword(ctx, "nobody", "x", []byte("hash-2"), []string{"imap"}); !errors.Is(err, ErrNotFound) {
			t.Fatalf("app password for no account: %v", err)
		}
		names, _, _, err := s.ChangesSince(ctx, gen, 10)
		if err != nil || fmt.Sprint(names) != "[alice]" {
			t.Fatalf("changes after adding = %v, %v; want alice", names, err)
		}
		u, _, err := s.Account(ctx, "alice")
		if err != nil || len(u.AppPasswords) != 1 || string(u.AppPasswords[0].Hash) != "hash-1" {
			t.Fatalf("Account's app passwords = %+v, %v", u, err)
		}
		if _, err := s.DeleteAppPassword(ctx, "bob", a.ID); !errors.Is(err, ErrNotFound) {
			t.Fatalf("bob deleted alice's app password: %v", err)
		}
		gone, err := s.DeleteAppPassword(ctx, "alice", a.ID)
		if err != nil || gone.Name != "printer" || string(gone.Hash) != "hash-1" {
			t.Fatalf("deleted %+v, %v", gone, err)
		}
		if list, err := s.AppPasswords(ctx, alice.ID); err != nil || len(list) != 0 {
			t.Fatalf("left %+v, %v", list, err)
		}
	})
}

// TestUserEvents: written for accounts only, newest first, pruned to the
// newest keep of each account.
func TestUserEvents(t *testing.T) {
	eachDialect(t, func(t *testing.T, db *testDB) {
		ctx := context.Background()
		s := db.open(t)
		if _, err := s.AddUser(ctx, NewUser{Name: "alice", PasswordHash: "x"}); err != nil {
			t.Fatal(err)
		}
		var batch []UserEvent
		at := time.Unix(1_700_000_000, 0)
		for i := range 8 {
			batch = append(batch, UserEvent{User: "alice", At: at.Add(time.Duration(i) * time.Second), Kind: UserEventSignIn,
				Protocol: "imap", Remote: "192.0.2.7", Result: "deny", Detail: fmt.Sprintf("n%d", i)})
		}
		batch = append(batch, UserEvent{User: "mallory", At: at, Kind: UserEventSignIn, Protocol: "ldap", Result: "deny", Detail: "x"})
		if err := s.AddUserEvents(ctx, batch, 5); err != nil {
			t.Fatal(err)
		}
		got, err := s.UserEvents(ctx, "alice", 50)
		if err != nil {
			t.Fatal(err)
		}
		var details []string
		for _, e := range got {
			details = append(details, e.Detail)
		}
		if fmt.Sprint(details) != "[n7 n6 n5 n4 n3]" {
			t.Fatalf("events kept = %v; want the newest 5, newest first", details)
		}
		if got[0].Remote != "192.0.2.7" || !got[0].At.Equal(at.Add(7*time.Second)) {
			t.Fatalf("event = %+v", got[0])
		}
		if m, _ := s.UserEvents(ctx, "mallory", 50); len(m) != 0 {
			t.Fatalf("events kept for a name that is no account: %+v", m)
		}
	})
}
