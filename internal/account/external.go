package account

import (
	"context"
	"errors"
	"fmt"

	"github.com/stepgate/stepgate/internal/store"
)

// upstreamAccount returns the name of the account that name stands for,
// creating the row of a person whom an upstream knows and stepgate does
// not yet (a directory entry, a mail login): such a person is an account
// without `user add`, and gets a row when stepgate first has something
// of theirs to keep. A local row of that name is used as it is.
func (s *Service) upstreamAccount(ctx context.Context, name string) (string, error) {
	if s.o.Directory == nil {
		if !s.o.MailAccounts {
			return name, nil
		}
		if _, err := s.st.User(ctx, name); !errors.Is(err, store.ErrNotFound) {
			return name, nil // there is a row (or the store will say why not)
		}
		u, err := s.st.AddExternalUser(ctx, name, store.SourceMail, "")
		switch {
		case errors.Is(err, store.ErrExists):
			return name, nil // made a moment ago by another process
		case err != nil:
			return "", invalid("name", err)
		}
		return u.Name, nil
	}
	e, err := s.o.Directory.Lookup(ctx, name)
	if err != nil {
		return "", fmt.Errorf("asking the directory for %q: %w", name, err)
	}
	if e == nil {
		if u, err := s.st.User(ctx, name); err == nil && u.Source == store.SourceLocal && u.ExternalID == "" {
			return u.Name, nil // an account of stepgate's own, next to the directory
		}
		return "", fmt.Errorf("no entry for %q in the directory (ldap.upstream), nor an account of stepgate's own: %w", name, store.ErrNotFound)
	}
	canonical, err := store.AccountName(e.Name)
	if err != nil {
		return "", fmt.Errorf("the directory names %s %q: %w", e.DN, e.Name, err)
	}
	if e.ID != "" {
		u, err := s.st.UserByExternalID(ctx, e.ID)
		switch {
		case err == nil:
			if u.Name != canonical {
				// Renamed upstream since stepgate last saw the person.
				if err := s.st.FollowDirectory(ctx, u.ID, canonical, e.ID); err != nil {
					return "", err
				}
			}
			return canonical, nil
		case !errors.Is(err, store.ErrNotFound):
			return "", err
		}
	}
	if u, err := s.st.User(ctx, canonical); err == nil {
		if e.ID != "" && u.ExternalID != "" && u.ExternalID != e.ID {
			return "", fmt.Errorf("%s: the row of that name belongs to another directory entry (a departed person?); delete it first", canonical)
		}
		if e.ID != "" && u.ExternalID == "" {
			if err := s.st.FollowDirectory(ctx, u.ID, canonical, e.ID); err != nil {
				return "", err
			}
		}
		return canonical, nil
	} else if !errors.Is(err, store.ErrNotFound) {
		return "", err
	}
	u, err := s.st.AddExternalUser(ctx, canonical, store.SourceDirectory, e.ID)
	if err != nil {
		return "", err
	}
	return u.Name, nil
}

// Row returns the account called name, making the row of a person known
// only upstream (the directory of ldap.upstream, or a mail server that
// checks logins) as enrolling would: the portal, after such a person
// signed in to set two-step up.
func (s *Service) Row(ctx context.Context, name string) (*store.User, error) {
	n, err := s.upstreamAccount(ctx, name)
	if err != nil {
		return nil, err
	}
	return s.st.User(ctx, n)
}
