package server

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"

	"github.com/stepgate/stepgate/internal/config"
	"github.com/stepgate/stepgate/internal/datadir"
	"github.com/stepgate/stepgate/internal/store"
	"github.com/stepgate/stepgate/internal/testenv"
	"github.com/stepgate/stepgate/internal/testenv/slapd"
)

// portalClient is a browser without a browser: cookies kept, redirects
// not followed, the form token read from each page.
type portalClient struct {
	t    *testing.T
	c    *http.Client
	base string
	csrf string
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func newPortalClient(t *testing.T, base string) *portalClient {
	jar, _ := cookiejar.New(nil)
	return &portalClient{t: t, base: strings.TrimSuffix(base, "/"), c: &http.Client{Jar: jar, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func (p *portalClient) get(path string) (int, string) {
	p.t.Helper()
	r, err := p.c.Get(p.base + path)
	if err != nil {
		p.t.Fatal(err)
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(r.Body)
	if m := csrfRE.FindSubmatch(b); m != nil {
		p.csrf = string(m[1])
	}
	return r.StatusCode, string(b)
}

func (p *portalClient) post(path string, form url.Values) (int, string) {
	p.t.Helper()
	form.Set("csrf", p.csrf)
	r, err := p.c.PostForm(p.base+path, form)
	if err != nil {
		p.t.Fatal(err)
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(r.Body)
	return r.StatusCode, r.Header.Get("Location") + string(b)
}

// TestPortalDirectoryAccount: with ldap.upstream, the portal checks the
// password with a bind to the directory (portal.password auto), and a
// person the directory knows but stepgate has never seen signs in with
// the directory password alone, gets a row bound to the entry, sets
// two-step up, and then binds through the LDAP front end with password
// and code; the portal then wants the code too.
func TestPortalDirectoryAccount(t *testing.T) {
	ldapwhoami := testenv.NeedProgram(t, "ldapwhoami")
	dora := slapd.Person{UID: "dora", Password: "dora-pass"}
	sd := slapd.Start(t, slapd.Options{LDIF: dora.LDIF()})
	t.Setenv(datadir.KeyFileEnv, "")
	dir := datadir.New(filepath.Join(t.TempDir(), "data"))
	core, addrs, _ := startWith(t, dir, false, nil, func(c *config.Config) {
		c.LDAP.Listen = "127.0.0.1:0"
		c.LDAP.Upstream = &config.LDAPUpstream{URLs: []string{sd.URL()}}
	})
	if core.Config.Portal.Password != "ldap" {
		t.Fatalf("portal.password auto with ldap.upstream = %q", core.Config.Portal.Password)
	}
	p := newPortalClient(t, addrs.Portal)
	p.get("/signin")
	if code, body := p.post("/signin", url.Values{"name": {"dora"}, "password": {"not-doras"}}); code != 401 {
		t.Fatalf("a wrong directory password: %d %s", code, body)
	}
	p.get("/signin")
	if code, loc := p.post("/signin", url.Values{"name": {"dora"}, "password": {dora.Password}}); code != 303 || !strings.HasPrefix(loc, "/setup") {
		t.Fatalf("the directory password: %d %.200s", code, loc)
	}
	u, err := core.Store.User(context.Background(), "dora")
	if err != nil || u.Source != store.SourceDirectory {
		t.Fatalf("dora's row after the portal sign-in: %+v, %v", u, err)
	}
	p.get("/setup")
	if code, _ := p.post("/setup/start", url.Values{"label": {"phone"}}); code != 303 {
		t.Fatalf("start: %d", code)
	}
	_, page := p.get("/setup")
	m := regexp.MustCompile(`<code id="key">([A-Z2-7 ]+)</code>`).FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no key on the set-up page")
	}
	key := strings.ReplaceAll(m[1], " ", "")
	now := time.Now()
	c0, _ := totp.GenerateCode(key, now)
	if code, loc := p.post("/setup/confirm", url.Values{"code": {c0}}); code != 303 || !strings.HasPrefix(loc, "/setup/done") {
		t.Fatalf("confirm: %d %.200s", code, loc)
	}
	c1, _ := totp.GenerateCode(key, now.Add(30*time.Second))
	if out, err := exec.Command(ldapwhoami, "-x", "-H", "ldap://"+addrs.LDAP, "-D", dora.DN(), "-w", dora.Password+c1).CombinedOutput(); err != nil {
		t.Fatalf("LDAP bind with the directory password and the code: %v: %s", err, out)
	}
	q := newPortalClient(t, addrs.Portal)
	q.get("/signin")
	if code, body := q.post("/signin", url.Values{"name": {"dora"}, "password": {dora.Password}}); code != 401 {
		t.Fatalf("the password alone once two-step is on: %d %.200s", code, body)
	}
}
