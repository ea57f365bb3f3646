package account

import (
	"context"
	"encoding/base32"
	"errors"
	"fmt"
	"strings"

	"github.com/stepgate/stepgate/internal/account/importfile"
	"github.com/stepgate/stepgate/internal/credential"
	"github.com/stepgate/stepgate/internal/password"
	"github.com/stepgate/stepgate/internal/recovery"
	"github.com/stepgate/stepgate/internal/store"
	"github.com/stepgate/stepgate/internal/verifier"
)

// Planned is an account an import adds, or adds to, as listings show
// it: never a secret.
type Planned struct {
	Name           string
	Source         string
	Line           int
	Existing       bool   // adds to an account that is there
	Scheme         string // the password hash's scheme
	Authenticators int
	RecoveryCodes  int
	Groups         []string
}

// Import checks every account of accs against the rules and against the
// store, and, unless dryRun, adds them all in one transaction. Any bad
// account is an importfile.Errors naming the line of every one, and
// then nothing is written. The accounts' TOTP tokens must be what the
// configured code parameters (Options.TOTP) check: stepgate has one
// length, period and algorithm for every authenticator.
func (s *Service) Import(ctx context.Context, accs []importfile.Account, dryRun bool) ([]Planned, error) {
	p := s.o.TOTP
	if p.Digits == 0 {
		p = verifier.DefaultTOTP
	}
	var errs importfile.Errors
	plan := make([]Planned, 0, len(accs))
	imp := make([]store.Imported, 0, len(accs))
	seen := make(map[string]*importfile.Account, len(accs))
	for i := range accs {
		a := &accs[i]
		before := len(errs)
		name, err := store.AccountName(a.Name)
		if err != nil {
			errs = append(errs, a.At("name").Errorf("%v", err))
		} else if prev := seen[name]; prev != nil {
			errs = append(errs, a.At("name").Errorf("account %s again (first at line %d)", name, prev.Line))
		} else {
			seen[name] = a
		}
		nu := NewUser{Name: a.Name, DisplayName: a.DisplayName, Email: a.Email, Phone: a.Phone, Groups: a.Groups}
		if name != "" {
			nu.Name = name
		}
		if !a.Existing {
			var inv *InvalidError
			if nu2, err := nu.Check(); errors.As(err, &inv) && inv.Field != "name" {
				errs = append(errs, a.At(inv.Field).Errorf("%v", inv.Err))
			} else if err == nil {
				nu = nu2
			}
			if a.PasswordHash == "" {
				errs = append(errs, a.At("password_hash").Errorf("no password hash: an imported account keeps the one it had"))
			} else if err := password.Check(a.PasswordHash); err != nil {
				errs = append(errs, a.At("password_hash").Errorf("%v", err))
			}
		}
		auths, aerrs := checkAuthenticators(a, p)
		errs = append(errs, aerrs...)
		codes := map[string]bool{}
		for _, c := range a.RecoveryCodes {
			switch {
			case !credential.IsRecoveryCode(c):
				errs = append(errs, a.At("recovery_codes").Errorf("%q is not a recovery code (three groups of four digits: 4821-0937-5512)", mask(c)))
			case codes[c]:
				errs = append(errs, a.At("recovery_codes").Errorf("the same recovery code twice"))
			}
			codes[c] = true
		}
		if a.Service && (len(auths) > 0 || len(a.RecoveryCodes) > 0) {
			errs = append(errs, a.At("service").Errorf("a service account signs in with a password alone: it takes no authenticator or recovery code"))
		}
		if len(errs) > before || name == "" {
			continue
		}
		u, err := s.st.User(ctx, name)
		switch {
		case err == nil && !a.Existing:
			errs = append(errs, a.At("name").Errorf("account %s exists already", name))
		case errors.Is(err, store.ErrNotFound) && a.Existing:
			errs = append(errs, a.At("name").Errorf("no account named %s: import or add it first, then its authenticator", name))
		case err != nil && !errors.Is(err, store.ErrNotFound):
			return nil, err
		case a.Existing && u.Service:
			errs = append(errs, a.At("name").Errorf("%s is a service account: it takes no authenticator", name))
		}
		imp = append(imp, store.Imported{NewUser: store.NewUser{Name: name, DisplayName: nu.DisplayName, Email: nu.Email,
			Phone: nu.Phone, PasswordHash: a.PasswordHash, Service: a.Service, Groups: a.Groups},
			Authenticators: auths, RecoveryCodes: a.RecoveryCodes, Disabled: a.Disabled, Existing: a.Existing})
		plan = append(plan, Planned{Name: name, Source: a.Source, Line: a.Line, Existing: a.Existing,
			Scheme: password.Scheme(a.PasswordHash), Authenticators: len(auths), RecoveryCodes: len(a.RecoveryCodes), Groups: a.Groups})
	}
	if len(errs) > 0 {
		errs.Sort()
		return plan, errs
	}
	if dryRun {
		return plan, nil
	}
	rec := recovery.New(s.st, nil, nil)
	if err := s.st.ImportWith(ctx, imp, store.ImportOptions{RecoveryHash: rec.Hash}); err != nil {
		return nil, fmt.Errorf("import: nothing was imported: %w", err)
	}
	return plan, nil
}

// checkAuthenticators refuses a token that stepgate would check
// differently from the system it comes from: another length, period or
// algorithm, a drift beyond the window, or an unreadable secret.
func checkAuthenticators(a *importfile.Account, p verifier.TOTP) ([]store.ImportedAuthenticator, importfile.Errors) {
	var out []store.ImportedAuthenticator
	var errs importfile.Errors
	labels := map[string]bool{}
	for _, au := range a.Authenticators {
		field := au.Field
		if field == "" {
			field = "authenticator"
		}
		bad := func(format string, args ...any) {
			errs = append(errs, (&importfile.Error{Source: a.Source, Line: au.Line, Field: field}).Errorf(format, args...))
		}
		label := strings.TrimSpace(au.Label)
		switch {
		case au.Refused != "":
			bad("the token cannot be moved: %s", au.Refused)
			continue
		case label == "" || len(label) > 64:
			bad("a label of 1 to 64 characters is needed")
		case labels[label]:
			bad("a second authenticator labelled %q", label)
		}
		labels[label] = true
		if au.Secret == "" {
			bad("no secret (an export made without --include-secrets has none)")
			continue
		}
		key, err := decodeSecret(au.Secret)
		switch {
		case err != nil:
			bad("the secret is not base32")
			continue
		case len(key) < 10:
			bad("the secret has %d bytes; at least 10 (80 bits, RFC 4226) are needed", len(key))
			continue
		}
		if au.Digits != 0 && au.Digits != p.Digits {
			bad("the token makes %d-digit codes; stepgate checks %d (two_step.digits)", au.Digits, p.Digits)
		}
		if au.Period != 0 && au.Period != p.Period {
			bad("the token's time step is %s; stepgate's is %s (two_step.period)", au.Period, p.Period)
		}
		if au.Algorithm != "" && au.Algorithm != "SHA1" {
			bad("the token uses HMAC-%s; stepgate's authenticators use HMAC-SHA1", au.Algorithm)
		}
		if au.Drift > p.Skew || -au.Drift > p.Skew {
			bad("the old system learnt a clock drift of %d steps; stepgate accepts %d either side (two_step.skew)", au.Drift, p.Skew)
		}
		// A step of another period length would mean another time.
		last := au.LastStep
		if au.Period != 0 && au.Period != p.Period {
			last = 0
		}
		out = append(out, store.ImportedAuthenticator{Label: label,
			Secret: base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(key), LastStep: last})
	}
	return out, errs
}

// decodeSecret reads a base32 secret as people write it: any case,
// spaces, with or without padding.
func decodeSecret(s string) ([]byte, error) {
	s = strings.TrimRight(strings.ToUpper(strings.ReplaceAll(strings.ReplaceAll(s, " ", ""), "-", "")), "=")
	switch len(s) % 8 {
	case 1, 3, 6:
		return nil, errors.New("not a whole number of bytes")
	}
	return base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(s)
}

// mask shows the shape of a code without the code.
func mask(c string) string {
	if len(c) > 24 {
		c = c[:24]
	}
	return strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' {
			return '9'
		}
		return r
	}, c)
}

// Export describes every account as `user import` reads it back. Without
// secrets it holds no password hash and no authenticator, and opens no
// sealed secret; with them, the password hashes and every confirmed
// authenticator's secret in clear base32 with its last used step, so
// that it imports to the same accounts. Recovery codes are never in it:
// only keyed hashes of them are kept.
func (s *Service) Export(ctx context.Context, withSecrets bool) (*importfile.JSONExport, error) {
	users, err := s.st.Users(ctx)
	if err != nil {
		return nil, err
	}
	out := &importfile.JSONExport{Format: importfile.ExportFormat, Secrets: withSecrets, Accounts: make([]importfile.JSONAccount, 0, len(users))}
	for _, u := range users {
		ja := importfile.JSONAccount{Name: u.Name, DisplayName: u.DisplayName, Email: u.Email, Phone: u.Phone,
			Groups: u.Groups, Service: u.Service, Disabled: u.Disabled, TwoStep: string(u.TwoStep)}
		if withSecrets {
			ja.PasswordHash = u.PasswordHash
			auths, err := s.st.Authenticators(ctx, u.ID, true)
			if err != nil {
				return nil, err
			}
			for _, a := range auths {
				ja.Authenticators = append(ja.Authenticators, importfile.JSONAuthenticator{Label: a.Label, Secret: a.Secret, LastStep: a.LastStep})
			}
		}
		out.Accounts = append(out.Accounts, ja)
	}
	return out, nil
}
