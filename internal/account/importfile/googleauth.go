package importfile

import (
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// ScratchCode turns one of google-authenticator's 8-digit scratch codes
// into the recovery code stepgate knows it by: "12345678" is
// "0000-1234-5678". Recovery codes are told apart from an appended
// 6-to-8-digit code by their dashes (credential.IsRecoveryCode), so a
// bare 8-digit scratch code could not be; the leading group is zeros so
// that the owner can still read it off the old list.
func ScratchCode(c string) string { return "0000-" + c[:4] + "-" + c[4:] }

// parseGoogleAuthenticator reads a google-authenticator PAM module file:
// the base32 secret, option lines starting with `"`, and scratch codes,
// one per line. The file has no password: its authenticator and codes
// go to an account that exists already.
func parseGoogleAuthenticator(data []byte, o Options) ([]Account, Errors) {
	name := o.User
	if name == "" && o.Source != "" && o.Source != "-" && o.Source != "stdin" {
		// /home/alice/.google_authenticator belongs to alice.
		abs, err := filepath.Abs(o.Source)
		if err == nil {
			name = filepath.Base(filepath.Dir(abs))
		}
	}
	a := Account{Line: 1, Name: name, Existing: true}
	a.note("name", 1, "the account (--user, or the file's folder)")
	if name == "" {
		return nil, Errors{{Line: 1, Msg: "whose file is this? give --user NAME (standard input has no folder to tell)"}}
	}
	var errs Errors
	au := Authenticator{Label: "google-authenticator", Line: 1, Field: "secret", Period: 30 * time.Second, Digits: 6, Algorithm: "SHA1"}
	totp := false
	for i, l := range strings.Split(string(data), "\n") {
		n := i + 1
		l = strings.TrimSpace(strings.TrimSuffix(l, "\r"))
		switch {
		case i == 0:
			au.Secret = l
			if l == "" {
				errs = append(errs, &Error{Line: n, Field: "secret", Msg: "empty: the first line is the base32 secret"})
			}
		case l == "":
		case strings.HasPrefix(l, `"`):
			f := strings.Fields(strings.TrimPrefix(l, `"`))
			if len(f) == 0 {
				continue
			}
			switch f[0] {
			case "TOTP_AUTH":
				totp = true
			case "HOTP_COUNTER":
				au.Refused = "an HOTP (counter) token; stepgate's authenticators are TOTP"
			case "STEP_SIZE":
				s, err := strconv.Atoi(strings.Join(f[1:], ""))
				if err != nil || s <= 0 {
					errs = append(errs, &Error{Line: n, Field: "STEP_SIZE", Msg: "not a number of seconds"})
					continue
				}
				au.Period = time.Duration(s) * time.Second
			case "DISALLOW_REUSE":
				// Used time steps (of the file's step size); the last one
				// stays used here.
				for _, v := range f[1:] {
					if s, err := strconv.ParseInt(v, 10, 64); err == nil && s > au.LastStep {
						au.LastStep = s
					}
				}
			}
			// RATE_LIMIT, WINDOW_SIZE: stepgate has its own.
		case len(l) == 8 && allDigits(l):
			a.RecoveryCodes = append(a.RecoveryCodes, ScratchCode(l))
		default:
			errs = append(errs, &Error{Line: n, Msg: "neither an option line (\") nor an 8-digit scratch code"})
		}
	}
	if !totp && au.Refused == "" {
		au.Refused = "no \" TOTP_AUTH line: the file is for counter-based (HOTP) codes"
	}
	a.Authenticators = []Authenticator{au}
	return []Account{a}, errs
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}
