package importfile

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// JSONAccount is one account in JSON: an element of a top-level array, or
// of the "accounts" array that `stepgate user export` writes.
type JSONAccount struct {
	Name           string              `json:"name"`
	DisplayName    string              `json:"display_name,omitempty"`
	Email          string              `json:"email,omitempty"`
	Phone          string              `json:"phone,omitempty"`
	PasswordHash   string              `json:"password_hash,omitempty"`
	TOTPSecret     string              `json:"totp_secret,omitempty"`
	Groups         []string            `json:"groups,omitempty"`
	RecoveryCodes  []string            `json:"recovery_codes,omitempty"`
	Service        bool                `json:"service,omitempty"`
	Disabled       bool                `json:"disabled,omitempty"`
	TwoStep        string              `json:"two_step,omitempty"` // written by export, ignored by import
	Authenticators []JSONAuthenticator `json:"authenticators,omitempty"`
}

// JSONAuthenticator is a confirmed authenticator app; export leaves the
// secret out unless asked for it.
type JSONAuthenticator struct {
	Label    string `json:"label"`
	Secret   string `json:"secret,omitempty"`
	LastStep int64  `json:"last_step,omitempty"`
}

// JSONExport is the document `stepgate user export` writes.
type JSONExport struct {
	Format   string        `json:"format"` // ExportFormat
	Secrets  bool          `json:"secrets"`
	Accounts []JSONAccount `json:"accounts"`
}

// ExportFormat names stepgate's export document and its version.
const ExportFormat = "stepgate-accounts/1"

func parseJSON(data []byte) ([]Account, Errors) {
	dec := json.NewDecoder(bytes.NewReader(data))
	lineAt := func(off int64) int { return 1 + bytes.Count(data[:min(int(off), len(data))], []byte("\n")) }
	fail := func(err error) Errors {
		off := dec.InputOffset()
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &se):
			off = se.Offset
		case errors.As(err, &te):
			off = te.Offset
		}
		return Errors{{Line: lineAt(off), Msg: "not JSON: " + err.Error()}}
	}
	tok, err := dec.Token()
	if err != nil {
		return nil, fail(err)
	}
	switch tok {
	case json.Delim('['):
	case json.Delim('{'):
		// {"format": ..., "secrets": ..., "accounts": [...]}
		found := false
		for dec.More() && !found {
			k, err := dec.Token()
			if err != nil {
				return nil, fail(err)
			}
			switch k {
			case "accounts":
				t, err := dec.Token()
				if err != nil {
					return nil, fail(err)
				}
				if t != json.Delim('[') {
					return nil, Errors{{Line: lineAt(dec.InputOffset()), Field: "accounts", Msg: "is not an array"}}
				}
				found = true
			case "format", "secrets":
				var skip json.RawMessage
				if err := dec.Decode(&skip); err != nil {
					return nil, fail(err)
				}
			default:
				return nil, Errors{{Line: lineAt(dec.InputOffset()), Msg: fmt.Sprintf("unknown key %q: the document holds an \"accounts\" array", k)}}
			}
		}
		if !found {
			return nil, Errors{{Line: lineAt(dec.InputOffset()), Msg: "no \"accounts\" array"}}
		}
	default:
		return nil, Errors{{Line: 1, Msg: "want an array of accounts, or an object with an \"accounts\" array"}}
	}
	var accs []Account
	var errs Errors
	for dec.More() {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return accs, append(errs, fail(err)...)
		}
		// The element starts at its first non-space byte before the offset.
		end := dec.InputOffset()
		start := end - int64(len(raw))
		line := lineAt(start)
		var ja JSONAccount
		ed := json.NewDecoder(bytes.NewReader(raw))
		ed.DisallowUnknownFields()
		if err := ed.Decode(&ja); err != nil {
			msg := err.Error()
			if f, ok := strings.CutPrefix(msg, "json: unknown field "); ok {
				msg = "unknown field " + f + "; fields are name, display_name, email, phone, password_hash, totp_secret, groups, recovery_codes, service, disabled, authenticators"
			}
			var te *json.UnmarshalTypeError
			if errors.As(err, &te) {
				msg = fmt.Sprintf("field %s is a JSON %s, want %s", te.Field, te.Value, te.Type)
			}
			errs = append(errs, &Error{Line: line, Msg: msg})
			continue
		}
		a := Account{Line: line, Name: ja.Name, DisplayName: ja.DisplayName, Email: ja.Email, Phone: ja.Phone,
			PasswordHash: ja.PasswordHash, Groups: ja.Groups, RecoveryCodes: ja.RecoveryCodes,
			Service: ja.Service, Disabled: ja.Disabled}
		if ja.TOTPSecret != "" {
			a.Authenticators = append(a.Authenticators, Authenticator{Label: "imported", Secret: ja.TOTPSecret, Line: line, Field: "totp_secret"})
		}
		for _, au := range ja.Authenticators {
			a.Authenticators = append(a.Authenticators, Authenticator{Label: au.Label, Secret: au.Secret, LastStep: au.LastStep, Line: line, Field: "authenticators"})
		}
		accs = append(accs, a)
	}
	if _, err := dec.Token(); err != nil && err != io.EOF {
		errs = append(errs, fail(err)...)
	}
	return accs, errs
}
