package server

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"

	"github.com/stepgate/stepgate/internal/config"
	"github.com/stepgate/stepgate/internal/datadir"
	"github.com/stepgate/stepgate/internal/password"
	"github.com/stepgate/stepgate/internal/store"
	"github.com/stepgate/stepgate/internal/testenv/apache"
)

const (
	apacheBindDN = "uid=apache,ou=services,dc=example,dc=org"
	apacheBindPW = "apache-service-pw"
)

// seedApacheUsers makes a data folder with enrolled users (password:
// NAMEpw) and the service account Apache searches with; it returns each
// user's TOTP secret.
func seedApacheUsers(t *testing.T, names ...string) (datadir.Dir, map[string]string) {
	t.Helper()
	t.Setenv(datadir.KeyFileEnv, "")
	dir := datadir.New(filepath.Join(t.TempDir(), "data"))
	ctx := context.Background()
	st, err := dir.Open(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	secrets := map[string]string{}
	for _, n := range names {
		h, _ := password.Hash(n + "pw")
		if _, err := st.AddUser(ctx, store.NewUser{Name: n, PasswordHash: h}); err != nil {
			t.Fatal(err)
		}
		key, _ := totp.Generate(totp.GenerateOpts{Issuer: "stepgate", AccountName: n})
		a, err := st.AddAuthenticator(ctx, n, "phone", key.Secret())
		if err != nil {
			t.Fatal(err)
		}
		if err := st.ConfirmAuthenticator(ctx, a.ID, 0); err != nil {
			t.Fatal(err)
		}
		secrets[n] = key.Secret()
	}
	h, _ := password.Hash(apacheBindPW)
	if _, err := st.AddUser(ctx, store.NewUser{Name: "apache", PasswordHash: h, Service: true}); err != nil {
		t.Fatal(err)
	}
	return dir, secrets
}

func codeOf(t *testing.T, secret string) string {
	t.Helper()
	c, err := totp.GenerateCode(secret, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// wrongOfN is the n-th wrong code next to code.
func wrongOfN(code string, n int) string { return string('0'+(code[0]-'0'+byte(n))%10) + code[1:] }

// auditReasons is the reason of each decision for user in the audit file.
func auditReasons(t *testing.T, file, user string) []string {
	t.Helper()
	raw, _ := os.ReadFile(file)
	var out []string
	for _, line := range strings.Split(string(raw), "\n") {
		var ev struct{ Msg, User, Reason, Remote string }
		if json.Unmarshal([]byte(line), &ev) == nil && ev.Msg == "decision" && ev.User == user {
			out = append(out, ev.Reason+"@"+ev.Remote)
		}
	}
	return out
}

// startBehindApache runs stepgate's LDAP front end (its own directory)
// with apps as lockout.applications, and Apache with mod_authnz_ldap in
// front of it; it returns Apache, stepgate's core and the audit file.
func startBehindApache(t *testing.T, dir datadir.Dir, apps []string, cache bool) (*apache.Server, *Core, string) {
	t.Helper()
	auditFile := filepath.Join(t.TempDir(), "audit.log")
	core, addrs, _ := startWith(t, dir, false, nil, func(c *config.Config) {
		c.LDAP.Listen = "127.0.0.1:0"
		c.Audit.File = auditFile
		c.Lockout.Applications = apps
	})
	ap := apache.Start(t, apache.Options{
		LDAPURL: "ldap://" + addrs.LDAP + "/ou=people,dc=example,dc=org?uid",
		BindDN:  apacheBindDN, BindPassword: apacheBindPW, Cache: cache,
	})
	return ap, core, auditFile
}

// TestApacheInFront: Apache httpd with mod_authnz_ldap (service account
// search, then a bind as the user) in front of stepgate's LDAP front
// end. Password and code get 200, a wrong code 401. Five wrong codes
// from three users through Apache then leave a fourth user with the
// right password and a fresh code signed in when 127.0.0.1 is in
// lockout.applications, and locked out (401, audited locked_out) without
// it, the old behaviour that refused everyone behind the application.
func TestApacheInFront(t *testing.T) {
	for _, c := range []struct {
		name    string
		apps    []string
		want    int
		reasons string
	}{
		{"listed", []string{"127.0.0.1"}, 200, "code@127.0.0.1"},
		{"not listed", nil, 401, "locked_out@127.0.0.1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir, secrets := seedApacheUsers(t, "alice", "carol", "dave", "erin")
			ap, _, auditFile := startBehindApache(t, dir, c.apps, false)

			if got := ap.Get(t, "erin", "erinpw"+codeOf(t, secrets["erin"])); got != 200 {
				t.Fatalf("erin with password and code: HTTP %d, want 200\n%s", got, ap.Log())
			}
			for i, u := range []string{"carol", "carol", "dave", "dave", "erin"} {
				// Distinct guesses: a repeated string counts once.
				if got := ap.Get(t, u, u+"pw"+wrongOfN(codeOf(t, secrets[u]), i%2+1)); got != 401 {
					t.Fatalf("%s with a wrong code: HTTP %d, want 401", u, got)
				}
			}
			if got := ap.Get(t, "alice", "alicepw"+codeOf(t, secrets["alice"])); got != c.want {
				t.Fatalf("alice with password and a fresh code after three users' typos: HTTP %d, want %d\naudit: %v",
					got, c.want, auditReasons(t, auditFile, "alice"))
			}
			if got := strings.Join(auditReasons(t, auditFile, "alice"), " "); got != c.reasons {
				t.Fatalf("alice's decisions %q, want %q", got, c.reasons)
			}
		})
	}
}

// TestApacheCacheHidesRevocation: why the README tells administrators to
// turn mod_ldap's caches off in front of stepgate. After a session is
// revoked its string (password + a used code) no longer signs in: with
// the caches off Apache asks stepgate and answers 401; with mod_ldap's
// defaults it answers 200 from its cache, for up to LDAPCacheTTL (600 s).
func TestApacheCacheHidesRevocation(t *testing.T) {
	for _, c := range []struct {
		name  string
		cache bool
		want  int
	}{
		{"caches off", false, 401},
		{"caches at their defaults", true, 200},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir, secrets := seedApacheUsers(t, "alice")
			ap, core, _ := startBehindApache(t, dir, []string{"127.0.0.1"}, c.cache)
			stored := "alicepw" + codeOf(t, secrets["alice"])
			if got := ap.Get(t, "alice", stored); got != 200 {
				t.Fatalf("password and code: HTTP %d, want 200\n%s", got, ap.Log())
			}
			if n, _ := core.Sessions.RevokeUserEverywhere(context.Background(), "alice"); n != 1 {
				t.Fatalf("%d sessions revoked, want 1", n)
			}
			if got := ap.Get(t, "alice", stored); got != c.want {
				t.Fatalf("the revoked string: HTTP %d, want %d", got, c.want)
			}
		})
	}
}
