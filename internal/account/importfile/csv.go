package importfile

import (
	"bytes"
	"encoding/csv"
	"errors"
	"io"
	"strconv"
	"strings"
)

// CSVColumns are the columns a CSV file may have, in any order; the
// first row names them and "name" and "password_hash" are required.
// groups and recovery_codes hold lists separated by ';' or spaces.
var CSVColumns = []string{"name", "display_name", "email", "phone", "password_hash", "totp_secret",
	"groups", "recovery_codes", "service", "disabled"}

func parseCSV(data []byte) ([]Account, Errors) {
	r := csv.NewReader(bytes.NewReader(data))
	r.FieldsPerRecord = -1
	r.Comment = '#'
	header, err := r.Read()
	if err == io.EOF {
		return nil, Errors{{Line: 1, Msg: "empty file: the first row names the columns (" + strings.Join(CSVColumns, ",") + ")"}}
	}
	if err != nil {
		return nil, Errors{csvError(err)}
	}
	var errs Errors
	col := map[string]int{}
	for i, h := range header {
		h = strings.ToLower(strings.TrimSpace(strings.TrimPrefix(h, "\ufeff")))
		known := false
		for _, c := range CSVColumns {
			known = known || c == h
		}
		line, _ := r.FieldPos(i)
		switch {
		case !known:
			errs = append(errs, &Error{Line: line, Field: "column " + strconv.Itoa(i+1),
				Msg: "unknown column " + strconv.Quote(h) + "; columns are " + strings.Join(CSVColumns, ", ")})
		case col[h] != 0:
			errs = append(errs, &Error{Line: line, Field: "column " + strconv.Itoa(i+1), Msg: "column " + h + " twice"})
		default:
			col[h] = i + 1
		}
	}
	for _, need := range []string{"name", "password_hash"} {
		if col[need] == 0 {
			errs = append(errs, &Error{Line: 1, Msg: "no " + need + " column"})
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	var accs []Account
	for {
		rec, err := r.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			errs = append(errs, csvError(err))
			var pe *csv.ParseError
			if errors.As(err, &pe) && pe.Err == csv.ErrFieldCount {
				continue
			}
			break // a broken quote leaves nothing to resynchronise on
		}
		line, _ := r.FieldPos(0)
		if len(rec) != len(header) {
			errs = append(errs, &Error{Line: line, Msg: "has " + strconv.Itoa(len(rec)) + " fields, the header " + strconv.Itoa(len(header))})
			continue
		}
		a := Account{Line: line}
		get := func(name string) string {
			i := col[name]
			if i == 0 {
				return ""
			}
			l, _ := r.FieldPos(i - 1)
			a.note(name, l, name+" (column "+strconv.Itoa(i)+")")
			return strings.TrimSpace(rec[i-1])
		}
		a.Name, a.DisplayName, a.Email, a.Phone = get("name"), get("display_name"), get("email"), get("phone")
		a.PasswordHash = get("password_hash")
		if s := get("totp_secret"); s != "" {
			a.Authenticators = []Authenticator{{Label: "imported", Secret: s, Line: a.Lines["totp_secret"], Field: a.Fields["totp_secret"]}}
		}
		a.Groups = splitList(get("groups"))
		a.RecoveryCodes = splitList(get("recovery_codes"))
		for _, f := range []struct {
			name string
			dst  *bool
		}{{"service", &a.Service}, {"disabled", &a.Disabled}} {
			v := strings.ToLower(get(f.name))
			switch v {
			case "", "false", "no", "0":
			case "true", "yes", "1":
				*f.dst = true
			default:
				errs = append(errs, a.At(f.name).Errorf("%q is not true or false", v))
			}
		}
		accs = append(accs, a)
	}
	return accs, errs
}

func csvError(err error) *Error {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		return &Error{Line: pe.Line, Field: "character " + strconv.Itoa(pe.Column), Msg: pe.Err.Error()}
	}
	return &Error{Line: 1, Msg: err.Error()}
}
