// Package enroll adds authenticator apps to accounts: a new secret, its
// otpauth:// URI and QR code, and confirmation with a first code, the
// "scan, then type the code the app shows" flow.
package enroll

import (
	"context"
	"errors"
	"fmt"
	"image/png"
	"io"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/mdp/qrterminal/v3"
	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"

	"github.com/stepgate/stepgate/internal/store"
	"github.com/stepgate/stepgate/internal/verifier"
)

// DefaultLabel names an authenticator when no label is given.
const DefaultLabel = "authenticator"

// ErrBadCode is returned by Confirm when the code matches no pending
// authenticator.
var ErrBadCode = errors.New("the code does not match any pending authenticator (check the phone's clock, and that the code is the newest)")

// Enrollment is a new, not yet confirmed authenticator.
type Enrollment struct {
	User   string
	Label  string
	Secret string // base32
	URI    string // otpauth://totp/...
	key    *otp.Key
}

// Start enrolls a new authenticator for user. It stays pending until
// Confirm; a pending one with the same label is replaced.
func Start(ctx context.Context, st *store.Store, user, label, issuer string, p verifier.TOTP) (*Enrollment, error) {
	if label == "" {
		label = DefaultLabel
	}
	u, err := st.User(ctx, user)
	if err != nil {
		return nil, err
	}
	if u.Service {
		return nil, fmt.Errorf("user %s is a service account: service accounts sign in with a password alone", u.Name)
	}
	key, err := totp.Generate(totp.GenerateOpts{
		Issuer:      issuer,
		AccountName: u.Name,
		Period:      uint(p.Period / time.Second),
		Digits:      otp.Digits(p.Digits),
		Algorithm:   otp.AlgorithmSHA1,
		SecretSize:  20,
	})
	if err != nil {
		return nil, fmt.Errorf("new TOTP secret: %w", err)
	}
	if _, err := st.AddAuthenticator(ctx, u.Name, label, key.Secret()); err != nil {
		return nil, err
	}
	return &Enrollment{User: u.Name, Label: label, Secret: key.Secret(), URI: key.URL(), key: key}, nil
}

// GroupedSecret is the secret in groups of four, for typing by hand.
func (e *Enrollment) GroupedSecret() string {
	var b strings.Builder
	for i, r := range e.Secret {
		if i > 0 && i%4 == 0 {
			b.WriteByte(' ')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// WriteTerminalQR draws the URI's QR code with half-block characters.
func (e *Enrollment) WriteTerminalQR(w io.Writer) {
	qrterminal.GenerateWithConfig(e.URI, qrterminal.Config{
		Level: qrterminal.M, Writer: w, HalfBlocks: true,
		BlackChar: qrterminal.BLACK_BLACK, WhiteBlackChar: qrterminal.WHITE_BLACK,
		WhiteChar: qrterminal.WHITE_WHITE, BlackWhiteChar: qrterminal.BLACK_WHITE,
		QuietZone: 2,
	})
}

// WritePNG writes the QR code as a PNG image (mode 0600: it is the secret).
func (e *Enrollment) WritePNG(path string) error {
	img, err := e.key.Image(320, 320)
	if err != nil {
		return fmt.Errorf("QR image: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("QR image: %w", err)
	}
	if err := png.Encode(f, img); err != nil {
		f.Close()
		return fmt.Errorf("QR image %s: %w", path, err)
	}
	return f.Close()
}

// Confirm activates the pending authenticator of user that code is valid
// for, turning two-step on. The step of the code is recorded, so the
// confirming code cannot also be used to sign in.
func Confirm(ctx context.Context, st *store.Store, p verifier.TOTP, user, code string, now time.Time) (label string, err error) {
	u, err := st.User(ctx, user)
	if err != nil {
		return "", err
	}
	auths, err := st.Authenticators(ctx, u.ID, false)
	if err != nil {
		return "", err
	}
	for _, a := range auths {
		if a.Confirmed {
			continue
		}
		step, ok, err := p.MatchStep(a.Secret, code, now)
		if err != nil {
			return "", err
		}
		if ok {
			return a.Label, st.ConfirmAuthenticator(ctx, a.ID, step)
		}
	}
	pending := false
	for _, a := range auths {
		pending = pending || !a.Confirmed
	}
	if !pending {
		return "", fmt.Errorf("user %s has no pending authenticator; run stepgate user enroll first", u.Name)
	}
	return "", ErrBadCode
}

// Existing describes an authenticator that is already enrolled, to show
// its QR code again.
func Existing(user, label, secret, issuer string, p verifier.TOTP) *Enrollment {
	key, err := otp.NewKeyFromURL(uriFor(user, secret, issuer, p))
	if err != nil {
		// The URI is built from validated parts; failing here is a bug.
		panic("enroll: " + err.Error())
	}
	return &Enrollment{User: user, Label: label, Secret: secret, URI: key.URL(), key: key}
}

func uriFor(user, secret, issuer string, p verifier.TOTP) string {
	v := url.Values{}
	v.Set("secret", secret)
	v.Set("issuer", issuer)
	v.Set("algorithm", "SHA1")
	v.Set("digits", strconv.Itoa(p.Digits))
	v.Set("period", strconv.Itoa(int(p.Period/time.Second)))
	return (&url.URL{Scheme: "otpauth", Host: "totp", Path: "/" + issuer + ":" + user, RawQuery: v.Encode()}).String()
}

// WritePNGTo writes the QR code as a PNG image of size pixels square.
func (e *Enrollment) WritePNGTo(w io.Writer, size int) error {
	img, err := e.key.Image(size, size)
	if err != nil {
		return fmt.Errorf("QR image: %w", err)
	}
	return png.Encode(w, img)
}
