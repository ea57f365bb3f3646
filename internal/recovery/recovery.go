// Package recovery makes and checks recovery codes: ten single-use codes
// an owner prints or writes down, to sign in when the phone with the
// authenticator, or the phone number, is gone.
//
// A recovery code is three groups of four digits ("4821-0937-5512"). It
// is appended where a code is expected, exactly like one: after the
// password, or after the configured separator
// ("classmate4821-0937-5512", "classmate;4821-0937-5512"). The dashes
// tell it apart from an appended 6 to 8 digit code under every split rule
// (see credential.Split), and give it 40 bits, so that ten live codes do
// not make guessing easier than a six-digit code does. Only keyed hashes
// of the codes are stored; a new set replaces the old one.
package recovery

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"strconv"

	"github.com/stepgate/stepgate/internal/credential"
	"github.com/stepgate/stepgate/internal/method"
	"github.com/stepgate/stepgate/internal/notify"
	"github.com/stepgate/stepgate/internal/store"
)

// SetSize is how many codes a set holds.
const SetSize = 10

// Service makes recovery codes and checks them at sign-in
// (verifier.CodeSource).
type Service struct {
	st     *store.Store
	key    []byte
	alerts *notify.Alerter
	log    *slog.Logger
}

// New returns a Service; alerts may be nil.
func New(st *store.Store, alerts *notify.Alerter, log *slog.Logger) *Service {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Service{st: st, key: st.Sealer().Derive("recovery code"), alerts: alerts, log: log}
}

// Hash is the keyed hash under which the recovery code code of the
// account with id userID is stored: an import hands it to
// store.ImportOptions, so that codes brought from elsewhere are kept
// exactly as the ones Generate makes.
func (s *Service) Hash(userID int64, code string) string { return s.hash(userID, code) }

func (s *Service) hash(userID int64, code string) string {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte(strconv.FormatInt(userID, 10)))
	m.Write([]byte{0})
	m.Write([]byte(code))
	return hex.EncodeToString(m.Sum(nil))
}

// Generate gives user a new set of codes and returns them; they are
// shown once and never again. The previous set stops working.
func (s *Service) Generate(ctx context.Context, user string) ([]string, error) {
	u, err := s.st.User(ctx, user)
	if err != nil {
		return nil, err
	}
	if u.Service {
		return nil, fmt.Errorf("user %s is a service account: service accounts sign in with a password alone", u.Name)
	}
	codes := make([]string, 0, SetSize)
	hashes := make([]string, 0, SetSize)
	seen := map[string]bool{}
	for len(codes) < SetSize {
		d, err := method.RandomDigits(12)
		if err != nil {
			return nil, err
		}
		c := d[0:4] + "-" + d[4:8] + "-" + d[8:12]
		if seen[c] {
			continue
		}
		seen[c] = true
		codes = append(codes, c)
		hashes = append(hashes, s.hash(u.ID, c))
	}
	if err := s.st.ReplaceRecoveryCodes(ctx, u.Name, hashes); err != nil {
		return nil, err
	}
	s.log.Info("recovery codes made", "user", u.Name, "count", SetSize)
	return codes, nil
}

// Left is how many unused codes user has.
func (s *Service) Left(ctx context.Context, user string) (int, error) {
	u, err := s.st.User(ctx, user)
	if err != nil {
		return 0, err
	}
	return s.st.RecoveryCodesLeft(ctx, u.ID)
}

// Match reports whether code is an unused recovery code of u; use uses
// it up (once, across processes) and alerts the owner.
func (s *Service) Match(ctx context.Context, u *store.User, code string) (func() (bool, error), bool) {
	if !credential.IsRecoveryCode(code) || u.ID == 0 {
		return nil, false
	}
	id, ok, err := s.st.UnusedRecoveryCode(ctx, u.ID, s.hash(u.ID, code))
	if err != nil {
		s.log.Error("reading recovery codes", "user", u.Name, "err", err)
		return nil, false
	}
	if !ok {
		return nil, false
	}
	return func() (bool, error) {
		used, err := s.st.UseRecoveryCode(ctx, id)
		if err != nil {
			// Not recorded, so not used: the code still works later.
			s.log.Error("using a recovery code", "user", u.Name, "err", err)
			return false, err
		}
		if !used {
			return false, nil
		}
		left, err := s.st.RecoveryCodesLeft(ctx, u.ID)
		if err != nil {
			left = -1
		}
		s.log.Warn("recovery code used", "user", u.Name, "left", left)
		s.alerts.Post(notify.Alert{Event: notify.EventRecoveryCodeUsed, User: u.Name, Detail: leftText(left)})
		return true, nil
	}, true
}

func leftText(n int) string {
	switch {
	case n < 0:
		return "the number of codes left is unknown"
	case n == 1:
		return "1 recovery code is left"
	default:
		return strconv.Itoa(n) + " recovery codes are left"
	}
}
