package store

import (
	"context"
	"errors"
	"slices"
	"testing"
)

// TestDirectoryAccounts: a directory-backed row has no hash, is found by
// its identity, follows a rename with its authenticators, and the change
// log names the old name too (so a server's cache drops it).
func TestDirectoryAccounts(t *testing.T) {
	eachDialect(t, func(t *testing.T, db *testDB) {
		ctx := context.Background()
		s := db.open(t)
		u, err := s.AddExternalUser(ctx, "Dora", SourceDirectory, "uuid-1")
		if err != nil {
			t.Fatal(err)
		}
		if u.Name != "dora" || u.Source != SourceDirectory || u.ExternalID != "uuid-1" || u.PasswordHash != "" {
			t.Fatalf("directory user = %+v", u)
		}
		if _, err := s.AddExternalUser(ctx, "eve", SourceDirectory, "uuid-1"); !errors.Is(err, ErrExists) {
			t.Fatalf("second row for one identity: %v", err)
		}
		if _, err := s.AddExternalUser(ctx, "eve", SourceLocal, ""); err == nil {
			t.Fatal("a local account without a hash was created")
		}
		m, err := s.AddExternalUser(ctx, "mailer", SourceMail, "")
		if err != nil || m.Source != SourceMail || m.ExternalID != "" {
			t.Fatalf("mail user = %+v, %v", m, err)
		}
		local, err := s.AddUser(ctx, NewUser{Name: "frank", PasswordHash: "h"})
		if err != nil || local.Source != SourceLocal {
			t.Fatalf("local user = %+v, %v", local, err)
		}
		if _, err := s.AddAuthenticator(ctx, "dora", "phone", "JBSWY3DPEHPK3PXP"); err != nil {
			t.Fatal(err)
		}
		got, err := s.UserByExternalID(ctx, "uuid-1")
		if err != nil || got.Name != "dora" {
			t.Fatalf("by identity = %+v, %v", got, err)
		}
		if _, err := s.UserByExternalID(ctx, "uuid-2"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("unknown identity: %v", err)
		}
		gen, err := s.Generation(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.FollowDirectory(ctx, got.ID, "Dorothy", "uuid-1"); err != nil {
			t.Fatal(err)
		}
		names, _, complete, err := s.ChangesSince(ctx, gen, 10)
		if err != nil || !complete || !slices.Contains(names, "dora") || !slices.Contains(names, "dorothy") {
			t.Fatalf("changes after a rename = %v, %v, %v", names, complete, err)
		}
		renamed, auths, err := s.Account(ctx, "dorothy")
		if err != nil || renamed.ID != got.ID || renamed.Epoch != got.Epoch+1 || renamed.ExternalID != "uuid-1" {
			t.Fatalf("renamed = %+v, %v", renamed, err)
		}
		if all, _ := s.Authenticators(ctx, got.ID, false); len(all) != 1 || len(auths) != 0 {
			t.Fatalf("authenticators after the rename: %d (confirmed %d)", len(all), len(auths))
		}
		if err := s.FollowDirectory(ctx, got.ID, "frank", "uuid-1"); !errors.Is(err, ErrExists) {
			t.Fatalf("rename onto another account: %v", err)
		}
		// A local row is bound to its directory entry on first sight.
		if err := s.FollowDirectory(ctx, local.ID, "frank", "uuid-3"); err != nil {
			t.Fatal(err)
		}
		if f, err := s.UserByExternalID(ctx, "uuid-3"); err != nil || f.Name != "frank" || f.PasswordHash != "h" || f.Epoch != local.Epoch {
			t.Fatalf("bound local row = %+v, %v", f, err)
		}
	})
}
