package verifier

import (
	"context"
	"errors"
	"fmt"

	"github.com/stepgate/stepgate/internal/store"
)

// DirectoryEntry is what a directory says about a name: the entry it
// stands for, the account name it gives that entry, the entry's stable
// identity and the groups it is in.
type DirectoryEntry struct {
	// DN is the entry's distinguished name, which an upstream bind names.
	DN string
	// Name is the entry's user attribute value: the account's name.
	Name string
	// ID is the entry's stable identity (entryUUID, objectGUID), "" when
	// the directory gave none: the account is then found by name alone.
	ID string
	// Groups are the DNs of the groups the entry is in, in the form
	// NormalizeDN-like callers compare (the directory package's).
	Groups []string
}

// Directory is an upstream directory that turns the name a client gave
// (NAME, NAME@DOMAIN, a DN) into the entry it stands for. Declared here
// so that the decision depends on this one call, not on an LDAP client.
type Directory interface {
	// Lookup returns the entry name stands for, nil when there is none,
	// or an error wrapping ErrUnavailable when the directory cannot tell.
	Lookup(ctx context.Context, name string) (*DirectoryEntry, error)
}

// directoryStore is what a store needs to keep directory-backed rows in
// step with the directory; *store.Store has it. A store without it finds
// accounts by name alone.
type directoryStore interface {
	UserByExternalID(ctx context.Context, id string) (*store.User, error)
	FollowDirectory(ctx context.Context, id int64, name, externalID string) error
}

var _ directoryStore = (*store.Store)(nil)

// errNameTaken is a directory identity whose name is held by the row of
// another identity: the directory gave a departed person's name to a new
// one, and the old row must go before the new person can sign in.
var errNameTaken = errors.New("the name belongs to the row of another directory identity")

// directoryAccount returns the account of a directory entry called name
// (canonical): the row bound to the entry's identity, renamed to the
// directory's name for it when the directory renamed the entry, or the
// row of that name not yet bound to an identity, which is bound now.
// nil: no row, the person is not enrolled.
func (v *Verifier) directoryAccount(ctx context.Context, name string, ent *DirectoryEntry) (*account, error) {
	acct, err := v.accounts.get(ctx, name)
	if err != nil || ent.ID == "" || (acct != nil && acct.user.ExternalID == ent.ID) {
		return acct, err
	}
	ds, ok := v.st.(directoryStore)
	if !ok {
		return acct, nil
	}
	u, err := ds.UserByExternalID(ctx, ent.ID)
	switch {
	case err == nil:
		if acct != nil {
			return nil, fmt.Errorf("%s (identity %s, held by %s): %w", name, ent.ID, u.Name, errNameTaken)
		}
		// Renamed upstream: the row follows, with its authenticators.
		if err := ds.FollowDirectory(ctx, u.ID, name, ent.ID); err != nil {
			return nil, err
		}
		v.audit.Info("directory rename followed", "user", name, "old_name", u.Name)
		v.accounts.drop(u.Name, name)
	case errors.Is(err, store.ErrNotFound):
		if acct == nil {
			return nil, nil
		}
		if acct.user.ExternalID != "" {
			return nil, fmt.Errorf("%s (identity %s, row bound to %s): %w", name, ent.ID, acct.user.ExternalID, errNameTaken)
		}
		// A row made before the directory was asked (user add, an
		// import): bound to the entry it names now.
		if err := ds.FollowDirectory(ctx, acct.user.ID, name, ent.ID); err != nil {
			return nil, err
		}
		v.accounts.drop(name)
	default:
		return nil, err
	}
	return v.accounts.get(ctx, name)
}

// memberOfRequired reports whether the entry (looked up by name in the
// server's directory when the attempt brought none) is in a group whose
// members must use two-step.
func (v *Verifier) memberOfRequired(ctx context.Context, name string, ent *DirectoryEntry) (bool, error) {
	if len(v.requireGroups) == 0 {
		return false, nil
	}
	if ent == nil && v.directory != nil {
		var err error
		if ent, err = v.directory.Lookup(ctx, name); err != nil {
			return false, err
		}
	}
	if ent == nil {
		return false, nil
	}
	for _, g := range ent.Groups {
		if _, ok := v.requireGroups[g]; ok {
			return true, nil
		}
	}
	return false, nil
}
