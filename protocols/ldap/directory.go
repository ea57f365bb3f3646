package ldap

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	goldap "github.com/go-ldap/ldap/v3"

	"github.com/stepgate/stepgate/internal/store"
)

// The local directory: stepgate's own accounts published as a small,
// read-only LDAP tree under the base DN:
//
//	BASE                       dcObject, organization
//	ou=people,BASE             people: inetOrgPerson, uid=NAME
//	ou=services,BASE           applications' service accounts: account, uid=NAME
//	ou=groups,BASE             groupOfNames, cn=GROUP, member=<user DNs>

// entry is one directory entry. Attribute names are kept as published
// (for the wire); lookups go through values, which ignores case.
type entry struct {
	dn     string
	parsed *goldap.DN
	attrs  []attribute // user attributes, in publishing order
	ops    []attribute // operational attributes, sent on "+" or by name
}

func (e *entry) values(name string) []string {
	for _, a := range e.attrs {
		if strings.EqualFold(a.name, name) {
			return a.values
		}
	}
	for _, a := range e.ops {
		if strings.EqualFold(a.name, name) {
			return a.values
		}
	}
	return nil
}

// attributeNames are the attributes stepgate's tree can hold; a filter on
// any other is undefined rather than false (RFC 4511 4.5.1.7).
var attributeNames = map[string]bool{
	"objectclass": true, "dc": true, "o": true, "ou": true, "uid": true, "cn": true, "sn": true,
	"displayname": true, "mail": true, "memberof": true, "member": true, "description": true,
	"entrydn": true, "createtimestamp": true, "modifytimestamp": true, "structuralobjectclass": true,
	"hassubordinates": true,
}

func knownAttribute(name string) bool { return attributeNames[strings.ToLower(name)] }

func isDNAttribute(name string) bool {
	switch strings.ToLower(name) {
	case "member", "memberof", "entrydn":
		return true
	}
	return false
}

// directoryStore is what the directory reads from the store; *store.Store
// has it. The tree depends on these three calls only.
type directoryStore interface {
	Generation(ctx context.Context) (int64, error)
	Users(ctx context.Context) ([]*store.User, error)
	Groups(ctx context.Context) ([]store.Group, error)
}

// directory builds and caches the tree from the store.
type directory struct {
	st   directoryStore
	base *goldap.DN
	// baseDN is the base as configured, used to build DNs.
	baseDN string
	// maxAge bounds how long a tree is served without asking the store
	// whether anything changed.
	maxAge time.Duration

	mu    sync.Mutex
	tree  *tree
	built time.Time
	gen   int64
}

// tree is one immutable snapshot of the directory.
type tree struct {
	entries []*entry // parents before children
	byDN    map[string]*entry
}

// dnKey is a DN in the form find looks entries up by: types and values
// without regard to case, stepgate's own RDNs being single-valued.
func dnKey(dn *goldap.DN) string {
	var b strings.Builder
	for i, r := range dn.RDNs {
		if i > 0 {
			b.WriteByte(',')
		}
		for j, a := range r.Attributes {
			if j > 0 {
				b.WriteByte('+')
			}
			b.WriteString(strings.ToLower(a.Type))
			b.WriteByte('=')
			b.WriteString(strings.ToLower(a.Value))
		}
	}
	return b.String()
}

func newDirectory(st directoryStore, baseDN string) (*directory, error) {
	base, err := goldap.ParseDN(baseDN)
	if err != nil || len(base.RDNs) == 0 {
		return nil, fmt.Errorf("ldap.base_dn %q is not a DN", baseDN)
	}
	return &directory{st: st, base: base, baseDN: base.String(), maxAge: time.Second}, nil
}

func (d *directory) peopleDN() string   { return "ou=people," + d.baseDN }
func (d *directory) servicesDN() string { return "ou=services," + d.baseDN }
func (d *directory) groupsDN() string   { return "ou=groups," + d.baseDN }
func (d *directory) userDN(name string) string {
	return "uid=" + goldap.EscapeDN(name) + "," + d.peopleDN()
}
func (d *directory) serviceDN(name string) string {
	return "uid=" + goldap.EscapeDN(name) + "," + d.servicesDN()
}
func (d *directory) groupDN(name string) string {
	return "cn=" + goldap.EscapeDN(name) + "," + d.groupsDN()
}

// snapshot returns the current tree, rebuilding it when the store has
// changed since it was built.
func (d *directory) snapshot(ctx context.Context) (*tree, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.tree != nil && time.Since(d.built) < d.maxAge {
		return d.tree, nil
	}
	gen, err := d.st.Generation(ctx)
	if err != nil {
		if d.tree != nil {
			// The store is unreachable (a database server restarting):
			// this instance learns of no account change meanwhile, its
			// verifier neither, so the last tree is as true as anything
			// it knows, and a session hit keeps working.
			return d.tree, nil
		}
		return nil, fmt.Errorf("ldap directory: %w", err)
	}
	if d.tree != nil && gen == d.gen {
		d.built = time.Now()
		return d.tree, nil
	}
	t, err := d.build(ctx)
	if err != nil {
		return nil, err
	}
	d.tree, d.gen, d.built = t, gen, time.Now()
	return t, nil
}

func (d *directory) build(ctx context.Context) (*tree, error) {
	users, err := d.st.Users(ctx)
	if err != nil {
		return nil, fmt.Errorf("ldap directory: %w", err)
	}
	groups, err := d.st.Groups(ctx)
	if err != nil {
		return nil, fmt.Errorf("ldap directory: %w", err)
	}
	t := &tree{byDN: map[string]*entry{}}
	add := func(dn string, attrs []attribute, created, updated time.Time, structural string) {
		parsed, err := goldap.ParseDN(dn)
		if err != nil {
			return // names are checked by the store; nothing to publish otherwise
		}
		ops := []attribute{{"entryDN", []string{dn}}, {"structuralObjectClass", []string{structural}}}
		if !created.IsZero() {
			ops = append(ops, attribute{"createTimestamp", []string{created.UTC().Format("20060102150405Z")}},
				attribute{"modifyTimestamp", []string{updated.UTC().Format("20060102150405Z")}})
		}
		e := &entry{dn: dn, parsed: parsed, attrs: attrs, ops: ops}
		t.entries = append(t.entries, e)
		t.byDN[dnKey(parsed)] = e
	}
	first := d.base.RDNs[0].Attributes[0]
	baseAttrs := []attribute{{"objectClass", []string{"top", "dcObject", "organization"}}}
	if strings.EqualFold(first.Type, "dc") {
		baseAttrs = append(baseAttrs, attribute{"dc", []string{first.Value}}, attribute{"o", []string{first.Value}})
	} else {
		baseAttrs = append(baseAttrs, attribute{first.Type, []string{first.Value}})
	}
	add(d.baseDN, baseAttrs, time.Time{}, time.Time{}, "organization")
	for _, ou := range []string{"people", "services", "groups"} {
		add("ou="+ou+","+d.baseDN, []attribute{{"objectClass", []string{"top", "organizationalUnit"}}, {"ou", []string{ou}}},
			time.Time{}, time.Time{}, "organizationalUnit")
	}
	memberOf := map[string][]string{}
	for _, g := range groups {
		for _, m := range g.Members {
			memberOf[strings.ToLower(m)] = append(memberOf[strings.ToLower(m)], d.groupDN(g.Name))
		}
	}
	service := map[string]bool{}
	for _, u := range users {
		if u.Service {
			service[strings.ToLower(u.Name)] = true
			add(d.serviceDN(u.Name), []attribute{
				{"objectClass", []string{"top", "account"}},
				{"uid", []string{u.Name}},
				{"description", []string{"stepgate service account"}},
			}, u.Created, u.Updated, "account")
			continue
		}
		cn := u.DisplayName
		if cn == "" {
			cn = u.Name
		}
		sn := cn
		if i := strings.LastIndexByte(cn, ' '); i >= 0 && i+1 < len(cn) {
			sn = cn[i+1:]
		}
		attrs := []attribute{
			{"objectClass", []string{"top", "person", "organizationalPerson", "inetOrgPerson"}},
			{"uid", []string{u.Name}},
			{"cn", []string{cn}},
			{"sn", []string{sn}},
			{"displayName", []string{cn}},
		}
		if u.Email != "" {
			attrs = append(attrs, attribute{"mail", []string{u.Email}})
		}
		if g := memberOf[strings.ToLower(u.Name)]; len(g) > 0 {
			attrs = append(attrs, attribute{"memberOf", g})
		}
		add(d.userDN(u.Name), attrs, u.Created, u.Updated, "inetOrgPerson")
	}
	for _, g := range groups {
		var members []string
		for _, m := range g.Members {
			if service[strings.ToLower(m)] {
				members = append(members, d.serviceDN(m))
			} else {
				members = append(members, d.userDN(m))
			}
		}
		attrs := []attribute{{"objectClass", []string{"top", "groupOfNames"}}, {"cn", []string{g.Name}}}
		if len(members) > 0 {
			attrs = append(attrs, attribute{"member", members})
		}
		add(d.groupDN(g.Name), attrs, time.Time{}, time.Time{}, "groupOfNames")
	}
	return t, nil
}

// find returns the entry named dn, or nil.
func (t *tree) find(dn *goldap.DN) *entry { return t.byDN[dnKey(dn)] }

// inScope reports whether e is within scope of base.
func inScope(e *entry, base *goldap.DN, scope int64) bool {
	switch scope {
	case 0:
		return e.parsed.EqualFold(base)
	case 1:
		return len(e.parsed.RDNs) == len(base.RDNs)+1 && base.AncestorOfFold(e.parsed)
	default:
		return e.parsed.EqualFold(base) || base.AncestorOfFold(e.parsed)
	}
}

// selectAttributes applies a search's attribute list (RFC 4511 4.5.1.8):
// none or "*" is every user attribute, "+" every operational one, "1.1"
// none, and names pick attributes whatever their case.
func selectAttributes(e *entry, want []string) []attribute {
	if len(want) == 0 {
		return e.attrs
	}
	all, ops := false, false
	named := map[string]bool{}
	for _, w := range want {
		switch w {
		case "*":
			all = true
		case "+":
			ops = true
		case "1.1":
		default:
			named[strings.ToLower(w)] = true
		}
	}
	var out []attribute
	for _, a := range e.attrs {
		if all || named[strings.ToLower(a.name)] {
			out = append(out, a)
		}
	}
	for _, a := range e.ops {
		if ops || named[strings.ToLower(a.name)] {
			out = append(out, a)
		}
	}
	return out
}
