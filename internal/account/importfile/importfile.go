// Package importfile reads the files that accounts are brought into
// stepgate from: CSV, JSON (stepgate's own export among them), LDIF as
// OpenLDAP's slapcat prints it (with slapo-otp's TOTP tokens), and
// google-authenticator's ~/.google_authenticator files.
//
// It knows the syntax of each format and where each value came from
// (Account.Lines); what a valid account is, package account decides, so
// that every error it finds can still name the line.
package importfile

import (
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Format is a file format.
type Format string

// The formats.
const (
	CSV                 Format = "csv"
	JSON                Format = "json"
	LDIF                Format = "ldif"
	GoogleAuthenticator Format = "google-authenticator"
)

// Formats lists every format, for help texts.
var Formats = []Format{CSV, JSON, LDIF, GoogleAuthenticator}

// Guess names the format of a file from its name: its extension, or the
// name google-authenticator gives its files.
func Guess(path string) (Format, bool) {
	base := filepath.Base(path)
	if base == ".google_authenticator" {
		return GoogleAuthenticator, true
	}
	switch strings.ToLower(filepath.Ext(base)) {
	case ".csv":
		return CSV, true
	case ".json":
		return JSON, true
	case ".ldif", ".ldf":
		return LDIF, true
	}
	return "", false
}

// ParseFormat reads a --format value.
func ParseFormat(s string) (Format, error) {
	for _, f := range Formats {
		if string(f) == s {
			return f, nil
		}
	}
	return "", fmt.Errorf("unknown format %q: use csv, json, ldif or google-authenticator", s)
}

// Account is one account as a file gives it.
type Account struct {
	Name, DisplayName, Email, Phone string
	PasswordHash                    string
	Groups                          []string
	Service, Disabled               bool
	Authenticators                  []Authenticator
	RecoveryCodes                   []string
	// Existing says the file adds to an account that is already there
	// (a google-authenticator file carries no password).
	Existing bool

	// Source names the file; Line is where the account starts in it.
	Source string
	Line   int
	// Lines maps a field ("name", "password_hash", ...) to the line its
	// value came from, where the format tells it apart from Line; Fields
	// maps it to the name the file gives it (an LDIF attribute, a CSV
	// column), where that differs.
	Lines  map[string]int
	Fields map[string]string
}

// At is where field of a came from: "FILE:LINE" and the file's name for
// the field.
func (a *Account) At(field string) *Error {
	e := &Error{Source: a.Source, Line: a.Line, Field: field}
	if l, ok := a.Lines[field]; ok {
		e.Line = l
	}
	if f, ok := a.Fields[field]; ok {
		e.Field = f
	}
	return e
}

func (a *Account) note(field string, line int, name string) {
	if a.Lines == nil {
		a.Lines, a.Fields = map[string]int{}, map[string]string{}
	}
	a.Lines[field] = line
	if name != "" && name != field {
		a.Fields[field] = name
	}
}

// Authenticator is a TOTP authenticator as a file gives it. Digits,
// Period and Algorithm are zero where the file does not say (then the
// usual 6 digits, 30 s, SHA-1 hold).
type Authenticator struct {
	Label     string
	Secret    string // base32, as stored
	LastStep  int64  // the last time step the old system accepted
	Digits    int
	Period    time.Duration
	Algorithm string // "SHA1", "SHA256", ...
	// Drift is the old system's learnt clock drift, in steps.
	Drift int
	// Refused says why the old system's token cannot be moved, when it
	// cannot (an HOTP counter, an encrypted secret).
	Refused string
	// Line and Field are where the file gives it (an LDIF oathTOTPToken,
	// a CSV totp_secret column).
	Line  int
	Field string
}

// Error is a bad value: the file, the line, the field or attribute, and
// what is wrong. Its text never holds a secret.
type Error struct {
	Source string
	Line   int
	Field  string
	Msg    string
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.Source != "" {
		b.WriteString(e.Source + " ")
	}
	fmt.Fprintf(&b, "line %d", e.Line)
	if e.Field != "" {
		b.WriteString(", " + e.Field)
	}
	return b.String() + ": " + e.Msg
}

// Errorf sets e's message.
func (e *Error) Errorf(format string, args ...any) *Error {
	e.Msg = fmt.Sprintf(format, args...)
	return e
}

// Errors is every bad value found, in file order.
type Errors []*Error

func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Sort orders es by file and line.
func (es Errors) Sort() {
	sort.SliceStable(es, func(i, j int) bool {
		if es[i].Source != es[j].Source {
			return es[i].Source < es[j].Source
		}
		return es[i].Line < es[j].Line
	})
}

// Options tune Parse.
type Options struct {
	// Source names the input in errors (a file's path, or "stdin").
	Source string
	// User is the account a google-authenticator file belongs to; empty
	// means the name of the folder the file is in (/home/alice/...).
	User string
}

// MaxInput bounds what one file may hold: a 100,000-account LDIF with
// TOTP tokens is some 60 MB.
const MaxInput = 1 << 30

// Parse reads accounts from data in format f. A file that cannot be read
// at all, or any bad row, is an Errors listing every bad row found.
func Parse(data []byte, f Format, o Options) ([]Account, error) {
	var accs []Account
	var errs Errors
	switch f {
	case CSV:
		accs, errs = parseCSV(data)
	case JSON:
		accs, errs = parseJSON(data)
	case LDIF:
		accs, errs = parseLDIF(data)
	case GoogleAuthenticator:
		accs, errs = parseGoogleAuthenticator(data, o)
	default:
		return nil, fmt.Errorf("unknown format %q", f)
	}
	for i := range accs {
		accs[i].Source = o.Source
	}
	for _, e := range errs {
		e.Source = o.Source
	}
	if len(errs) > 0 {
		errs.Sort()
		return accs, errs
	}
	return accs, nil
}

// splitList reads a list in one CSV cell or LDIF-free text: values
// separated by ';', ',' or spaces.
func splitList(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ';' || r == ',' || r == ' ' || r == '\t' })
}
