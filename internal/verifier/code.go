package verifier

import (
	"crypto/subtle"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
)

// TOTP holds the parameters of authenticator codes (RFC 6238).
type TOTP struct {
	Digits int           // 6 by default
	Period time.Duration // 30 s by default
	Skew   int           // steps accepted either side of now; 1 by default
}

// DefaultTOTP is what authenticator apps do out of the box.
var DefaultTOTP = TOTP{Digits: 6, Period: 30 * time.Second, Skew: 1}

func (p TOTP) opts() totp.ValidateOpts {
	return totp.ValidateOpts{Period: uint(p.Period / time.Second), Digits: otp.Digits(p.Digits), Algorithm: otp.AlgorithmSHA1}
}

// Step is the time step that t falls in.
func (p TOTP) Step(t time.Time) int64 { return t.Unix() / int64(p.Period/time.Second) }

// MatchStep checks code against secret for every step in the window
// around now and returns the newest step at which it is valid. Each
// candidate is compared in constant time and the whole window is always
// computed, so the time taken says nothing about which step (if any)
// matched. (pquerna/otp's Validate cannot tell which step matched, and the
// replay guard needs it.)
func (p TOTP) MatchStep(secret, code string, now time.Time) (step int64, ok bool, err error) {
	opts := p.opts()
	cur := p.Step(now)
	period := int64(p.Period / time.Second)
	for s := cur + int64(p.Skew); s >= cur-int64(p.Skew); s-- {
		want, err := totp.GenerateCodeCustom(secret, time.Unix(s*period, 0), opts)
		if err != nil {
			return 0, false, err
		}
		if subtle.ConstantTimeCompare([]byte(want), []byte(code)) == 1 && !ok {
			step, ok = s, true
		}
	}
	return step, ok, nil
}

// Code returns the code for secret at time t.
func (p TOTP) Code(secret string, t time.Time) (string, error) {
	return totp.GenerateCodeCustom(secret, t, p.opts())
}
