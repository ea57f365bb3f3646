package account

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strings"

	"github.com/stepgate/stepgate/internal/delivery"
	"github.com/stepgate/stepgate/internal/notify"
	"github.com/stepgate/stepgate/internal/store"
	"github.com/stepgate/stepgate/internal/verifier"
)

// appPasswordKey keys the hashes app passwords are found by; the
// verifier is given the same key (server: NewCore).
func (s *Service) appPasswordKey() []byte { return AppPasswordKey(s.st) }

// AppPasswordKey is the key of app passwords' hashes for st: derived from
// its sealing key, so every instance on the store has it and nothing
// else to configure.
func AppPasswordKey(st *store.Store) []byte { return st.Sealer().Derive("app-password") }

// NewAppPassword is an app password just made: Password is shown once.
type NewAppPassword struct {
	store.AppPassword
	Password string
}

// appPasswordLetters leave out letters that are easily misread (l, o).
const appPasswordLetters = "abcdefghijkmnpqrstuvwxyz"

// CreateAppPassword makes a random app password for user, named name, for
// protocols (a subset of verifier.AppPasswordProtocols): four groups of
// four letters, about 73 bits, typed with the spaces or without
// (AppPasswordHash leaves spaces out).
func (s *Service) CreateAppPassword(ctx context.Context, user, name string, protocols []string) (*NewAppPassword, error) {
	name = strings.TrimSpace(name)
	if name == "" || len(name) > 64 {
		return nil, invalid("name", errors.New("give the device a name of 1 to 64 characters"))
	}
	if len(protocols) == 0 {
		return nil, invalid("protocols", errors.New("tick at least one protocol"))
	}
	for _, p := range protocols {
		if !slices.Contains(verifier.AppPasswordProtocols, p) {
			return nil, invalid("protocols", fmt.Errorf("%q is not one of %s", p, strings.Join(verifier.AppPasswordProtocols, ", ")))
		}
	}
	u, err := s.existing(ctx, user)
	if err != nil {
		return nil, err
	}
	if u.Service {
		return nil, fmt.Errorf("user %s is a service account: it has no app passwords", u.Name)
	}
	var b strings.Builder
	for i := range 16 {
		if i > 0 && i%4 == 0 {
			b.WriteByte(' ')
		}
		n, err := rand.Int(rand.Reader, big.NewInt(int64(len(appPasswordLetters))))
		if err != nil {
			return nil, err
		}
		b.WriteByte(appPasswordLetters[n.Int64()])
	}
	a, err := s.st.AddAppPassword(ctx, u.Name, name, verifier.AppPasswordHash(s.appPasswordKey(), u.Name, b.String()), protocols)
	if err != nil {
		return nil, err
	}
	return &NewAppPassword{AppPassword: *a, Password: b.String()}, nil
}

// AppPasswords lists user's app passwords, oldest first.
func (s *Service) AppPasswords(ctx context.Context, user string) ([]store.AppPassword, error) {
	u, err := s.existing(ctx, user)
	if err != nil {
		return nil, err
	}
	return s.st.AppPasswords(ctx, u.ID)
}

// RevokeAppPassword deletes app password id of user and ends its
// sessions on every instance (the connections it opened close).
func (s *Service) RevokeAppPassword(ctx context.Context, v *verifier.Verifier, user string, id int64) (*store.AppPassword, error) {
	a, err := s.st.DeleteAppPassword(ctx, user, id)
	if err != nil {
		return nil, err
	}
	if v == nil {
		return a, nil
	}
	// This instance forgets it now; the others at their next poll of the
	// change log, like every other account change.
	if _, err := v.Refresh(ctx); err != nil {
		return a, err
	}
	for _, p := range a.Protocols {
		key := v.AppSessionKey(lookupName(user), a.Hash, p)
		rec, err := s.st.SessionByKey(ctx, key[:])
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return a, err
		}
		if _, err := v.Sessions().RevokeEverywhere(ctx, rec.ID); err != nil {
			return a, err
		}
	}
	return a, nil
}

func lookupName(name string) string {
	if c, err := store.AccountName(name); err == nil {
		return c
	}
	return name
}

// ErrLastAuthenticator refuses to remove the only second factor of an
// account with two-step on.
var ErrLastAuthenticator = errors.New("it is the account's only second factor; add another first")

// ErrBadCode is a code that matches no confirmed authenticator of the
// account (or was used already).
var ErrBadCode = errors.New("the code does not match (or was used already)")

// RemoveAuthenticator removes authenticator id of user, once code is a
// current code of one of the account's confirmed authenticators (its
// time step is used up). The last second factor stays.
func (s *Service) RemoveAuthenticator(ctx context.Context, user string, id int64, code string) error {
	u, err := s.existing(ctx, user)
	if err != nil {
		return err
	}
	auths, err := s.st.Authenticators(ctx, u.ID, true)
	if err != nil {
		return err
	}
	if err := s.useCode(ctx, auths, code); err != nil {
		return err
	}
	var label string
	err = s.withDelivery(func(d *delivery.Delivery) error {
		a, m, err := d.Methods.Factors(ctx, u)
		if err != nil {
			return err
		}
		confirmed := slices.ContainsFunc(auths, func(x store.Authenticator) bool { return x.ID == id })
		if confirmed && u.TwoStep == store.TwoStepActive && a+m <= 1 {
			return ErrLastAuthenticator
		}
		for _, x := range auths {
			if x.ID == id {
				label = x.Label
			}
		}
		if err := s.st.RemoveAuthenticator(ctx, u.Name, id); err != nil {
			return err
		}
		if _, err := d.Methods.Settle(ctx, u.Name); err != nil {
			return err
		}
		return alert(ctx, d, notify.Alert{Event: notify.EventTwoStepDisabled, User: u.Name,
			Detail: fmt.Sprintf("The authenticator %q was removed", label)})
	})
	return err
}

// useCode accepts code when it is current for one of auths and its time
// step was not used, and uses the step up.
func (s *Service) useCode(ctx context.Context, auths []store.Authenticator, code string) error {
	now := s.o.Now()
	for _, a := range auths {
		step, ok, err := s.o.TOTP.MatchStep(a.Secret, code, now)
		if err != nil {
			return err
		}
		if !ok || step <= a.LastStep {
			continue
		}
		switch err := s.st.ConsumeStep(ctx, a.ID, step); {
		case err == nil:
			return nil
		case errors.Is(err, store.ErrStepUsed):
			continue
		default:
			return err
		}
	}
	return ErrBadCode
}
