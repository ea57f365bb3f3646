package importfile

import (
	"bytes"
	"encoding/base32"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ldifEntry is one LDIF record: its DN and its values, each with the line
// it starts on.
type ldifEntry struct {
	dn    string
	line  int
	attrs []ldifValue
}

type ldifValue struct {
	name  string // lower case, options removed ("userpassword")
	given string // as the file spells it, for errors
	value string
	line  int
}

// first is the entry's first value of the attribute name (lower case).
func (e *ldifEntry) first(name string) (ldifValue, bool) {
	for _, v := range e.attrs {
		if v.name == name {
			return v, true
		}
	}
	return ldifValue{}, false
}

func (e *ldifEntry) all(name string) []ldifValue {
	var out []ldifValue
	for _, v := range e.attrs {
		if v.name == name {
			out = append(out, v)
		}
	}
	return out
}

// hasClass reports whether the entry has objectClass c (any case).
func (e *ldifEntry) hasClass(c string) bool {
	for _, v := range e.all("objectclass") {
		if strings.EqualFold(v.value, c) {
			return true
		}
	}
	return false
}

// readLDIF reads the content records of RFC 2849, as slapcat and
// ldapsearch -LLL print them: "attr: value", "attr:: base64", lines
// folded by a leading space, comments, records separated by blank lines.
// go-ldap/ldif reads the same, but keeps no line numbers, and every
// error here names the line of the value.
func readLDIF(data []byte) ([]ldifEntry, Errors) {
	var entries []ldifEntry
	var errs Errors
	var cur *ldifEntry
	// logical is one unfolded line and the physical line it starts on.
	type logical struct {
		text string
		line int
	}
	var lines []logical
	for i, raw := range bytes.Split(data, []byte("\n")) {
		l := strings.TrimSuffix(string(raw), "\r")
		if strings.HasPrefix(l, " ") && len(lines) > 0 && lines[len(lines)-1].text != "" {
			lines[len(lines)-1].text += l[1:]
			continue
		}
		lines = append(lines, logical{l, i + 1})
	}
	flush := func() {
		if cur != nil {
			entries = append(entries, *cur)
			cur = nil
		}
	}
	for n, l := range lines {
		switch {
		case l.text == "":
			flush()
			continue
		case strings.HasPrefix(l.text, "#"):
			continue
		case n == 0 && strings.HasPrefix(strings.ToLower(l.text), "version:"):
			continue
		}
		i := strings.IndexByte(l.text, ':')
		if i <= 0 {
			errs = append(errs, &Error{Line: l.line, Msg: "not an LDIF line (attribute: value)"})
			continue
		}
		given := l.text[:i]
		rest := l.text[i+1:]
		var value string
		switch {
		case strings.HasPrefix(rest, ":"):
			b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(rest[1:]))
			if err != nil {
				errs = append(errs, &Error{Line: l.line, Field: given, Msg: "the value after :: is not base64"})
				continue
			}
			value = string(b)
		case strings.HasPrefix(rest, "<"):
			errs = append(errs, &Error{Line: l.line, Field: given, Msg: "values read from a URL (:<) are not supported"})
			continue
		default:
			value = strings.TrimLeft(rest, " ")
		}
		name := strings.ToLower(given)
		if j := strings.IndexByte(name, ';'); j >= 0 {
			name = name[:j]
		}
		if cur == nil {
			if name != "dn" {
				errs = append(errs, &Error{Line: l.line, Field: given, Msg: "a record starts with dn:"})
				// Skip to the next blank line.
				cur = &ldifEntry{line: l.line}
				continue
			}
			cur = &ldifEntry{dn: value, line: l.line}
			continue
		}
		if name == "changetype" {
			errs = append(errs, &Error{Line: l.line, Field: given, Msg: "change records are not accounts: give entries, as slapcat or ldapsearch -LLL print them"})
		}
		cur.attrs = append(cur.attrs, ldifValue{name: name, given: given, value: value, line: l.line})
	}
	flush()
	// Records that started without a dn were reported; leave them out.
	out := entries[:0]
	for _, e := range entries {
		if e.dn != "" {
			out = append(out, e)
		}
	}
	return out, errs
}

// normDN is a DN in the form compared here: lower case, no spaces around
// the separators. Enough for slapcat's own output, which writes every DN
// the same way.
func normDN(dn string) string {
	parts := strings.Split(dn, ",")
	for i, p := range parts {
		k, v, _ := strings.Cut(p, "=")
		parts[i] = strings.ToLower(strings.TrimSpace(k)) + "=" + strings.ToLower(strings.TrimSpace(v))
	}
	return strings.Join(parts, ",")
}

// OIDs of oathHMACAlgorithm (RFC 8018 B.1).
var hmacOIDs = map[string]string{
	"1.2.840.113549.2.7":  "SHA1",
	"1.2.840.113549.2.8":  "SHA224",
	"1.2.840.113549.2.9":  "SHA256",
	"1.2.840.113549.2.10": "SHA384",
	"1.2.840.113549.2.11": "SHA512",
}

// parseLDIF turns a directory's entries into accounts: every entry with
// a uid is one, with cn as its display name, mail, userPassword, and the
// TOTP token its oathTOTPToken names (slapo-otp), read with the
// parameters its oathTOTPParams names.
func parseLDIF(data []byte) ([]Account, Errors) {
	entries, errs := readLDIF(data)
	byDN := make(map[string]*ldifEntry, len(entries))
	for i := range entries {
		byDN[normDN(entries[i].dn)] = &entries[i]
	}
	var accs []Account
	for i := range entries {
		e := &entries[i]
		uid, ok := e.first("uid")
		if !ok {
			continue
		}
		a := Account{Line: e.line, Name: uid.value}
		a.note("name", uid.line, uid.given)
		if cn, ok := e.first("displayname"); ok {
			a.DisplayName = cn.value
		} else if cn, ok := e.first("cn"); ok {
			a.DisplayName = cn.value
		}
		if m, ok := e.first("mail"); ok {
			a.Email = m.value
			a.note("email", m.line, m.given)
		}
		if p, ok := e.first("mobile"); ok {
			a.Phone = p.value
			a.note("phone", p.line, p.given)
		}
		pws := e.all("userpassword")
		switch len(pws) {
		case 0:
			a.note("password_hash", e.line, "userPassword")
		case 1:
			a.PasswordHash = pws[0].value
			a.note("password_hash", pws[0].line, pws[0].given)
		default:
			errs = append(errs, &Error{Line: pws[1].line, Field: pws[1].given, Msg: "more than one userPassword: stepgate keeps one password per account"})
		}
		for _, tv := range e.all("oathtotptoken") {
			au, err := ldifToken(byDN, tv)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			au.Field = tv.given
			a.Authenticators = append(a.Authenticators, au)
		}
		if hv, ok := e.first("oathhotptoken"); ok {
			a.Authenticators = append(a.Authenticators, Authenticator{Label: "imported", Line: hv.line, Field: hv.given,
				Refused: "an HOTP (counter) token; stepgate's authenticators are TOTP"})
		}
		accs = append(accs, a)
	}
	return accs, errs
}

// ldifToken reads the token entry that the user's oathTOTPToken value v
// names, and its parameters entry.
func ldifToken(byDN map[string]*ldifEntry, v ldifValue) (Authenticator, *Error) {
	bad := func(format string, args ...any) *Error {
		return &Error{Line: v.line, Field: v.given, Msg: fmt.Sprintf(format, args...)}
	}
	tok, ok := byDN[normDN(v.value)]
	if !ok {
		return Authenticator{}, bad("the token entry %q is not in the file", v.value)
	}
	au := Authenticator{Label: "imported", Line: v.line, Field: v.given}
	sec, ok := tok.first("oathsecret")
	if !ok || sec.value == "" {
		return au, bad("the token entry %q has no oathSecret", v.value)
	}
	au.Secret = base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString([]byte(sec.value))
	if ls, ok := tok.first("oathtotplasttimestep"); ok {
		n, err := strconv.ParseInt(strings.TrimSpace(ls.value), 10, 64)
		if err != nil || n < 0 {
			return au, &Error{Line: ls.line, Field: ls.given, Msg: "not a time step number"}
		}
		au.LastStep = n
	}
	if d, ok := tok.first("oathtotptimestepdrift"); ok {
		n, err := strconv.Atoi(strings.TrimSpace(d.value))
		if err != nil {
			return au, &Error{Line: d.line, Field: d.given, Msg: "not a number of steps"}
		}
		au.Drift = n
	}
	pv, ok := tok.first("oathtotpparams")
	if !ok {
		return au, bad("the token entry %q names no oathTOTPParams: its length, algorithm and period are unknown", v.value)
	}
	params, ok := byDN[normDN(pv.value)]
	if !ok {
		return au, &Error{Line: pv.line, Field: pv.given, Msg: fmt.Sprintf("the parameters entry %q is not in the file", pv.value)}
	}
	num := func(attr string) (int, *Error) {
		x, ok := params.first(attr)
		if !ok {
			return 0, nil
		}
		n, err := strconv.Atoi(strings.TrimSpace(x.value))
		if err != nil || n <= 0 {
			return 0, &Error{Line: x.line, Field: x.given, Msg: "not a positive number"}
		}
		return n, nil
	}
	var err *Error
	if au.Digits, err = num("oathotplength"); err != nil {
		return au, err
	}
	period, err := num("oathtotptimestepperiod")
	if err != nil {
		return au, err
	}
	au.Period = time.Duration(period) * time.Second
	if alg, ok := params.first("oathhmacalgorithm"); ok {
		name, known := hmacOIDs[strings.TrimSpace(alg.value)]
		if !known {
			return au, &Error{Line: alg.line, Field: alg.given, Msg: fmt.Sprintf("unknown HMAC algorithm %q", alg.value)}
		}
		au.Algorithm = name
	}
	if _, ok := params.first("oathenckey"); ok {
		au.Refused = "its secret is encrypted (oathEncKey on " + pv.value + ")"
	}
	return au, nil
}
