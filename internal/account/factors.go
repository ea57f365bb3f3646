package account

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/stepgate/stepgate/internal/delivery"
	"github.com/stepgate/stepgate/internal/enroll"
	"github.com/stepgate/stepgate/internal/method"
	"github.com/stepgate/stepgate/internal/notify"
	"github.com/stepgate/stepgate/internal/store"
)

// delivery returns the delivery of codes and alerts and the function to
// call when done with it.
func (s *Service) delivery() (*delivery.Delivery, func(), error) {
	if s.o.Delivery == nil {
		return nil, nil, errors.New("account: no delivery of codes is set up")
	}
	return s.o.Delivery()
}

// withDelivery runs fn with the delivery of codes and alerts.
func (s *Service) withDelivery(fn func(*delivery.Delivery) error) error {
	d, done, err := s.delivery()
	if err != nil {
		return err
	}
	defer done()
	return fn(d)
}

// alert sends al to the owner now; alerts that are turned off are no
// failure. The change it reports stands whether or not it goes out.
func alert(ctx context.Context, d *delivery.Delivery, al notify.Alert) error {
	if _, err := d.Alerts.Send(ctx, al); err != nil && !errors.Is(err, notify.ErrAlertsOff) {
		return err
	}
	return nil
}

// Enroll starts a new authenticator for user with the given label
// (enroll.DefaultLabel when empty). It works once ConfirmAuthenticator
// has seen a first code from it.
func (s *Service) Enroll(ctx context.Context, user, label string) (*enroll.Enrollment, error) {
	name, err := s.upstreamAccount(ctx, user)
	if err != nil {
		return nil, err
	}
	return enroll.Start(ctx, s.st, name, label, s.o.Issuer, s.o.TOTP)
}

// AuthenticatorConfirmed is what ConfirmAuthenticator did.
type AuthenticatorConfirmed struct {
	Label   string
	TwoStep store.TwoStep // the account's state now
	// AlertErr is why the "authenticator added" alert did not go out,
	// if it did not (the authenticator works all the same).
	AlertErr error
}

// ConfirmAuthenticator activates the pending authenticator of user that
// code is valid for, settles two-step under the backup-method policy and
// alerts the owner.
func (s *Service) ConfirmAuthenticator(ctx context.Context, user, code string) (*AuthenticatorConfirmed, error) {
	label, err := enroll.Confirm(ctx, s.st, s.o.TOTP, user, code, s.o.Now())
	if err != nil {
		return nil, err
	}
	var res *AuthenticatorConfirmed
	err = s.withDelivery(func(d *delivery.Delivery) error {
		state, err := d.Methods.Settle(ctx, user)
		if err != nil {
			return err
		}
		alertErr := alert(ctx, d, notify.Alert{Event: notify.EventMethodAdded, User: user, Detail: fmt.Sprintf("An authenticator %q", label)})
		res = &AuthenticatorConfirmed{Label: label, TwoStep: state, AlertErr: alertErr}
		return nil
	})
	return res, err
}

// DisableTwoStep removes every authenticator of user, turns two-step off
// (every session ends) and alerts the owner. alertErr is why the alert
// did not go out, if it did not: two-step is off all the same.
func (s *Service) DisableTwoStep(ctx context.Context, user string) (alertErr, err error) {
	if err := s.st.DisableTwoStep(ctx, user); err != nil {
		return nil, err
	}
	d, done, err := s.delivery()
	if err != nil {
		return err, nil
	}
	defer done()
	return alert(ctx, d, notify.Alert{Event: notify.EventTwoStepDisabled, User: user}), nil
}

// AddMethod adds an e-mail address or a phone number to user's account
// and sends a confirmation code to it. A malformed address is an
// *InvalidError.
func (s *Service) AddMethod(ctx context.Context, user string, kind store.MethodKind, address string) (*store.Method, error) {
	var m *store.Method
	err := s.withDelivery(func(d *delivery.Delivery) error {
		if _, err := d.Methods.Normalize(kind, address); err != nil {
			return invalid("address", err)
		}
		var err error
		m, err = d.Methods.Add(ctx, user, kind, address)
		return err
	})
	return m, err
}

// ConfirmMethod verifies the pending method of user that code was sent
// to, settles two-step and alerts the owner.
func (s *Service) ConfirmMethod(ctx context.Context, user, code string) (*method.Confirmed, error) {
	var c *method.Confirmed
	err := s.withDelivery(func(d *delivery.Delivery) (err error) {
		c, err = d.Methods.Confirm(ctx, user, code)
		return err
	})
	return c, err
}

// MethodSummary is a delivery method as listings show it.
type MethodSummary struct {
	ID       int64      `json:"id"`
	Kind     string     `json:"kind"`
	Address  string     `json:"address"`
	Verified bool       `json:"verified"`
	Primary  bool       `json:"primary"` // sign-in codes go here
	Created  time.Time  `json:"created"`
	Verify   *time.Time `json:"verified_at,omitempty"`
}

// Methods lists user's delivery methods, oldest first.
func (s *Service) Methods(ctx context.Context, user string) ([]MethodSummary, error) {
	var ms []store.Method
	var primary *store.Method
	err := s.withDelivery(func(d *delivery.Delivery) error {
		var err error
		if ms, err = d.Methods.List(ctx, user); err != nil {
			return err
		}
		u, err := s.st.User(ctx, user)
		if err != nil {
			return err
		}
		primary, err = d.Methods.Primary(ctx, u)
		return err
	})
	if err != nil {
		return nil, err
	}
	out := make([]MethodSummary, 0, len(ms))
	for _, m := range ms {
		j := MethodSummary{ID: m.ID, Kind: string(m.Kind), Address: m.Address, Verified: m.Verified,
			Primary: primary != nil && primary.ID == m.ID, Created: m.Created.UTC()}
		if m.Verified {
			v := m.VerifiedAt.UTC()
			j.Verify = &v
		}
		out = append(out, j)
	}
	return out, nil
}

// RemoveMethod removes method id of user; the last second factor of an
// account with two-step on stays (method.ErrLastFactor).
func (s *Service) RemoveMethod(ctx context.Context, user string, id int64) error {
	return s.withDelivery(func(d *delivery.Delivery) error { return d.Methods.Remove(ctx, user, id) })
}

// SetPrimaryMethod makes verified method id the one user's sign-in codes
// go to.
func (s *Service) SetPrimaryMethod(ctx context.Context, user string, id int64) error {
	return s.withDelivery(func(d *delivery.Delivery) error { return d.Methods.SetPrimary(ctx, user, id) })
}

// RecoveryCodes makes new single-use recovery codes for user; the
// previous ones stop working. They are returned once and kept only as
// hashes.
func (s *Service) RecoveryCodes(ctx context.Context, user string) ([]string, error) {
	var codes []string
	err := s.withDelivery(func(d *delivery.Delivery) (err error) {
		codes, err = d.Recovery.Generate(ctx, user)
		return err
	})
	return codes, err
}

// RecoveryCodesLeft is how many unused recovery codes user has.
func (s *Service) RecoveryCodesLeft(ctx context.Context, user string) (int, error) {
	var n int
	err := s.withDelivery(func(d *delivery.Delivery) (err error) {
		n, err = d.Recovery.Left(ctx, user)
		return err
	})
	return n, err
}
