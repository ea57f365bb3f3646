package ldap

import (
	"fmt"
	"strings"

	ber "github.com/go-asn1-ber/asn1-ber"
	goldap "github.com/go-ldap/ldap/v3"
)

// maxFilterDepth bounds the nesting of and/or/not a client may send.
const maxFilterDepth = 64

// checkFilter makes sure a filter has the shape RFC 4511 4.5.1 gives it,
// so that match can trust it.
func checkFilter(f *ber.Packet, depth int) error {
	bad := func(what string) error { return fmt.Errorf("%w: search filter: %s", errMalformed, what) }
	if depth > maxFilterDepth {
		return bad("nested too deep")
	}
	if f.ClassType != ber.ClassContext {
		return bad("not a filter choice")
	}
	switch f.Tag {
	case goldap.FilterAnd, goldap.FilterOr:
		for _, c := range f.Children {
			if err := checkFilter(c, depth+1); err != nil {
				return err
			}
		}
	case goldap.FilterNot:
		if len(f.Children) != 1 {
			return bad("not without exactly one filter")
		}
		return checkFilter(f.Children[0], depth+1)
	case goldap.FilterEqualityMatch, goldap.FilterGreaterOrEqual, goldap.FilterLessOrEqual, goldap.FilterApproxMatch:
		if len(f.Children) != 2 {
			return bad("assertion without attribute and value")
		}
	case goldap.FilterSubstrings:
		if len(f.Children) != 2 || len(f.Children[1].Children) == 0 {
			return bad("substrings without parts")
		}
	case goldap.FilterPresent:
	case goldap.FilterExtensibleMatch:
	default:
		return bad(fmt.Sprintf("unknown choice %d", f.Tag))
	}
	return nil
}

// tri is a filter's value under RFC 4511 4.5.1.7: true, false or
// undefined (an attribute the entry's schema does not know).
type tri int8

const (
	triFalse tri = iota
	triTrue
	triUndefined
)

// match evaluates filter f against entry e. Every attribute stepgate
// publishes is compared without regard to case (caseIgnoreMatch and
// DN matching, close enough for uid, cn, mail and member values).
func match(f *ber.Packet, e *entry) tri {
	switch f.Tag {
	case goldap.FilterAnd:
		out := triTrue
		for _, c := range f.Children {
			switch match(c, e) {
			case triFalse:
				return triFalse
			case triUndefined:
				out = triUndefined
			}
		}
		return out
	case goldap.FilterOr:
		out := triFalse
		for _, c := range f.Children {
			switch match(c, e) {
			case triTrue:
				return triTrue
			case triUndefined:
				out = triUndefined
			}
		}
		return out
	case goldap.FilterNot:
		switch match(f.Children[0], e) {
		case triTrue:
			return triFalse
		case triFalse:
			return triTrue
		}
		return triUndefined
	case goldap.FilterPresent:
		if len(e.values(string(f.Data.Bytes()))) > 0 {
			return triTrue
		}
		return triFalse
	case goldap.FilterEqualityMatch, goldap.FilterApproxMatch, goldap.FilterGreaterOrEqual, goldap.FilterLessOrEqual:
		attr, want := stringValue(f.Children[0]), strings.ToLower(stringValue(f.Children[1]))
		if !knownAttribute(attr) {
			return triUndefined
		}
		for _, v := range e.values(attr) {
			v = strings.ToLower(v)
			switch f.Tag {
			case goldap.FilterGreaterOrEqual:
				if v >= want {
					return triTrue
				}
			case goldap.FilterLessOrEqual:
				if v <= want {
					return triTrue
				}
			default:
				if v == want || (isDNAttribute(attr) && sameDN(v, want)) {
					return triTrue
				}
			}
		}
		return triFalse
	case goldap.FilterSubstrings:
		attr := stringValue(f.Children[0])
		if !knownAttribute(attr) {
			return triUndefined
		}
		for _, v := range e.values(attr) {
			if substringsMatch(strings.ToLower(v), f.Children[1].Children) {
				return triTrue
			}
		}
		return triFalse
	}
	// Extensible matches name matching rules stepgate does not implement.
	return triUndefined
}

func substringsMatch(v string, parts []*ber.Packet) bool {
	for i, p := range parts {
		s := strings.ToLower(string(p.Data.Bytes()))
		switch p.Tag {
		case goldap.FilterSubstringsInitial:
			if i != 0 || !strings.HasPrefix(v, s) {
				return false
			}
			v = v[len(s):]
		case goldap.FilterSubstringsAny:
			k := strings.Index(v, s)
			if k < 0 {
				return false
			}
			v = v[k+len(s):]
		case goldap.FilterSubstringsFinal:
			if i != len(parts)-1 || !strings.HasSuffix(v, s) {
				return false
			}
		default:
			return false
		}
	}
	return true
}

func sameDN(a, b string) bool {
	da, err1 := goldap.ParseDN(a)
	db, err2 := goldap.ParseDN(b)
	return err1 == nil && err2 == nil && da.EqualFold(db)
}
