package main_test

import (
	"crypto/rand"
	"encoding/base32"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	goldap "github.com/go-ldap/ldap/v3"
	"golang.org/x/crypto/bcrypt"

	"github.com/stepgate/stepgate/internal/password"
	"github.com/stepgate/stepgate/internal/testenv"
	"github.com/stepgate/stepgate/internal/testenv/slapd"
)

// otpUser is a person of the slapd+otp directory the test moves from.
type otpUser struct {
	uid, pw, hash string
	key           []byte // the token's oathSecret
}

func (u otpUser) secret() string {
	return base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(u.key)
}

func randomKey(t *testing.T) []byte {
	k := make([]byte, 20)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

// lineOf is the 1-based line of the first line starting with prefix
// after the line "dn: "+dn.
func lineOf(t *testing.T, text, dn, prefix string) int {
	t.Helper()
	in := false
	for i, l := range strings.Split(text, "\n") {
		if l == "dn: "+dn {
			in = true
		} else if in && strings.HasPrefix(l, prefix) {
			return i + 1
		}
	}
	t.Fatalf("no %q after dn: %s in\n%s", prefix, dn, text)
	return 0
}

// TestImportSlapcatOfSlapdOTP moves a slapd+otp directory to stepgate as
// a site would: slapcat's dump of a real slapd with the otp overlay,
// whose people have password hashes of five schemes (made by slappasswd,
// and bcrypt and argon2id from other systems) and TOTP tokens. A dump
// with a bad hash and a token stepgate cannot check is refused naming
// their lines, and nothing is imported; --dry-run lists both. Fixed in
// the directory and dumped again, it imports, and every person then
// signs in through stepgate's LDAP front end (ldapwhoami) with their
// password and a code computed from their original oathSecret. A code
// slapd+otp had accepted stays used.
func TestImportSlapcatOfSlapdOTP(t *testing.T) {
	testenv.NeedPrograms(t, "slapd", "slapcat", "slappasswd", "ldapwhoami")
	argon2id, err := password.Hash("pw-fay")
	if err != nil {
		t.Fatal(err)
	}
	bc, _ := bcrypt.GenerateFromPassword([]byte("pw-eve"), bcrypt.MinCost)
	users := []otpUser{
		{uid: "ann", pw: "pw-ann", hash: slapd.Slappasswd(t, "pw-ann", "-h", "{SSHA}")},
		{uid: "ben", pw: "pw-ben", hash: slapd.Slappasswd(t, "pw-ben", "-h", "{SSHA512}")},
		{uid: "cat", pw: "pw-cat", hash: slapd.Slappasswd(t, "pw-cat", "-h", "{CRYPT}", "-c", "$6$rounds=5000$%.16s")},
		{uid: "dan", pw: "pw-dan", hash: slapd.Slappasswd(t, "pw-dan", "-h", "{ARGON2}")},
		{uid: "eve", pw: "pw-eve", hash: "{CRYPT}" + string(bc)},
		{uid: "fay", pw: "pw-fay", hash: argon2id},
	}
	var ldif strings.Builder
	for i := range users {
		users[i].key = randomKey(t)
		u := users[i]
		ldif.WriteString(slapd.Person{UID: u.uid, CN: "Person " + u.uid, Mail: u.uid + "@example.org", Password: u.hash, TOTPSecret: u.key}.LDIF())
	}
	// Two rows stepgate refuses: a hash it cannot check, and a token
	// with 8-digit codes, a 60 s step and HMAC-SHA256.
	gus := slapd.Person{UID: "gus", Password: "{MD5}Xr4ilOzQ4PCOq3aQ0qbuaQ=="}
	hal := slapd.Person{UID: "hal", Password: slapd.Slappasswd(t, "pw-hal", "-h", "{SSHA}")}
	ldif.WriteString(gus.LDIF() + hal.LDIF())
	fmt.Fprintf(&ldif, "dn: cn=totp8-params,ou=otp,%[1]s\nobjectClass: device\nobjectClass: oathTOTPParams\ncn: totp8-params\n"+
		"oathOTPLength: 8\noathHMACAlgorithm: 1.2.840.113549.2.9\noathTOTPTimeStepPeriod: 60\n\n"+
		"dn: cn=hal,ou=otp,%[1]s\nobjectClass: device\nobjectClass: oathTOTPToken\ncn: hal\n"+
		"oathTOTPParams: cn=totp8-params,ou=otp,%[1]s\noathSecret:: %[2]s\n\n", slapd.Suffix, "MTIzNDU2Nzg5MDEyMzQ1Njc4OTA=")
	srv := slapd.Start(t, slapd.Options{OTP: true, PasswordModules: true, LDIF: ldif.String()})
	ldap, err := goldap.DialURL(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer ldap.Close()
	if err := ldap.Bind(slapd.RootDN, slapd.RootPW); err != nil {
		t.Fatal(err)
	}
	halDN := "uid=hal,ou=people," + slapd.Suffix
	if err := ldap.Modify(&goldap.ModifyRequest{DN: halDN, Changes: []goldap.Change{
		{Operation: goldap.AddAttribute, Modification: goldap.PartialAttribute{Type: "objectClass", Vals: []string{"oathTOTPUser"}}},
		{Operation: goldap.AddAttribute, Modification: goldap.PartialAttribute{Type: "oathTOTPToken", Vals: []string{"cn=hal,ou=otp," + slapd.Suffix}}},
	}}); err != nil {
		t.Fatal(err)
	}

	// ann signs in to slapd+otp once: the directory is in use, and the
	// hashes and tokens are ones slapd itself accepts.
	ann := users[0]
	usedAt := time.Now()
	used := code(t, ann.secret(), usedAt)
	if err := ldap.Bind(slapd.Person{UID: "ann"}.DN(), ann.pw+used); err != nil {
		t.Fatalf("ann's bind to slapd+otp: %v\n%s", err, srv.Log())
	}
	for _, u := range users[1:4] {
		if err := ldap.Bind(slapd.Person{UID: u.uid}.DN(), u.pw+code(t, u.secret(), time.Now())); err != nil {
			t.Fatalf("%s's bind to slapd+otp: %v", u.uid, err)
		}
	}

	work := t.TempDir()
	dump := srv.Slapcat()
	dumpFile := filepath.Join(work, "directory.ldif")
	if err := os.WriteFile(dumpFile, []byte(dump), 0o600); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(dump, "oathSecret::") || !strings.Contains(dump, "oathTOTPLastTimeStep:") || !strings.Contains(dump, "\n ") {
		t.Fatalf("slapcat's dump lacks base64 secrets, the last used step or folded lines:\n%s", dump)
	}
	dir := filepath.Join(work, "data")
	gusLine := lineOf(t, dump, gus.DN(), "userPassword")
	halLine := lineOf(t, dump, halDN, "oathTOTPToken")

	dry := run(t, dir, "", "user", "import", "--dry-run", dumpFile)
	for _, want := range []string{
		fmt.Sprintf("directory.ldif line %d, userPassword: unsupported password hash scheme: {MD5}", gusLine),
		fmt.Sprintf("directory.ldif line %d, oathTOTPToken: the token makes 8-digit codes; stepgate checks 6", halLine),
		fmt.Sprintf("directory.ldif line %d, oathTOTPToken: the token's time step is 1m0s; stepgate's is 30s", halLine),
		fmt.Sprintf("directory.ldif line %d, oathTOTPToken: the token uses HMAC-SHA256", halLine),
		"4 bad row(s): nothing was imported",
	} {
		if !strings.Contains(dry.stderr, want) {
			t.Errorf("dry run's errors lack %q", want)
		}
	}
	for _, u := range users {
		if !strings.Contains(dry.stdout, "would import "+u.uid+" ") {
			t.Errorf("dry run does not list %s", u.uid)
		}
	}
	if dry.code != 1 || t.Failed() {
		t.Fatalf("dry run: exit %d\nstdout: %s\nstderr: %s", dry.code, dry.stdout, dry.stderr)
	}
	r := run(t, dir, "", "user", "import", dumpFile)
	if r.code != 1 || !strings.Contains(r.stderr, fmt.Sprintf("line %d, userPassword", gusLine)) || !strings.Contains(r.stderr, "nothing was imported") {
		t.Fatalf("import with bad rows: %+v", r)
	}
	if r := must(t, run(t, dir, "", "user", "list", "--json")); strings.TrimSpace(r.stdout) != "[]" {
		t.Fatalf("accounts after a refused import: %s", r.stdout)
	}

	// The site fixes its directory and dumps it again.
	for _, dn := range []string{gus.DN(), halDN, "cn=hal,ou=otp," + slapd.Suffix} {
		if err := ldap.Bind(slapd.RootDN, slapd.RootPW); err != nil {
			t.Fatal(err)
		}
		if err := ldap.Del(goldap.NewDelRequest(dn, nil)); err != nil {
			t.Fatalf("deleting %s: %v", dn, err)
		}
	}
	if err := os.WriteFile(dumpFile, []byte(srv.Slapcat()), 0o600); err != nil {
		t.Fatal(err)
	}
	r = must(t, run(t, dir, "", "user", "import", "--dry-run", dumpFile))
	if !strings.Contains(r.stdout, "would import cat (") || !strings.Contains(r.stdout, "password sha512-crypt, 1 authenticator(s)") ||
		!strings.Contains(r.stdout, "dry run: 6 account(s), 6 authenticator(s)") {
		t.Fatalf("dry run of the fixed dump:\n%s", r.stdout)
	}
	if r := must(t, run(t, dir, "", "user", "list", "--json")); strings.TrimSpace(r.stdout) != "[]" {
		t.Fatalf("a dry run wrote accounts: %s", r.stdout)
	}
	if r := must(t, run(t, dir, "", "user", "import", dumpFile)); r.stdout != "imported 6 account(s), 6 authenticator(s), 0 recovery code(s)\n" {
		t.Fatalf("import: %q", r.stdout)
	}

	ldapAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	serve(t, dir, "--ldap-listen", ldapAddr, "--imap-listen", "off")
	dn := func(uid string) string { return "uid=" + uid + ",ou=people,dc=example,dc=org" }
	// The code ann used at slapd+otp stays used.
	if rc, out := ldapwhoami(t, ldapAddr, dn("ann"), ann.pw+used); rc != 49 {
		t.Fatalf("ann with the code slapd+otp had taken: exit %d, want 49: %s", rc, out)
	}
	next := usedAt.Add(30 * time.Second)
	for _, u := range users {
		if rc, out := ldapwhoami(t, ldapAddr, dn(u.uid), u.pw+code(t, u.secret(), next)); rc != 0 || !strings.Contains(out, "dn:"+dn(u.uid)) {
			t.Errorf("%s (%s) with its old authenticator's code: exit %d: %s", u.uid, password.Scheme(u.hash), rc, out)
		}
		if rc, _ := ldapwhoami(t, ldapAddr, dn(u.uid), u.pw); rc != 49 {
			t.Errorf("%s with the password alone: exit %d, want 49", u.uid, rc)
		}
	}
	var list []map[string]any
	if err := json.Unmarshal([]byte(must(t, run(t, dir, "", "user", "list", "--json")).stdout), &list); err != nil {
		t.Fatal(err)
	}
	if len(list) != 6 || list[0]["name"] != "ann" || list[0]["email"] != "ann@example.org" || list[0]["display_name"] != "Person ann" || list[0]["two_step"] != "active" {
		t.Fatalf("user list after the import: %v", list)
	}
}

// TestExportRoundTrip: an export without --include-secrets holds no
// password hash and no secret; with it, a warning, and the document
// imports into another data folder to the same accounts, whose codes
// still sign in. Without the sealing key, --include-secrets is refused.
func TestExportRoundTrip(t *testing.T) {
	work := t.TempDir()
	const secret = "JBSWY3DPEHPK3PXPJBSWY3DP"
	hash := slapd.Slappasswd(t, "pw-ann", "-h", "{SSHA}")
	csv := "name,display_name,email,password_hash,totp_secret,groups,disabled\n" +
		"ann,Ann A,ann@example.org," + hash + "," + secret + ",staff;ops,\n" +
		"bob,,,{SSHA}AObY8gUELMBu7fg8b4YBZUvyRWw06sxv,,,true\n"
	csvFile := filepath.Join(work, "people.csv")
	os.WriteFile(csvFile, []byte(csv), 0o600)
	a, b := filepath.Join(work, "a"), filepath.Join(work, "b")
	must(t, run(t, a, "", "user", "import", csvFile))

	plain := must(t, run(t, a, "", "user", "export", "--format", "json"))
	for _, s := range []string{secret, hash, "password_hash", "secret\""} {
		if strings.Contains(plain.stdout, s) {
			t.Errorf("export without --include-secrets holds %q:\n%s", s, plain.stdout)
		}
	}
	if !strings.Contains(plain.stdout, `"name": "ann"`) || plain.stderr != "" {
		t.Fatalf("export: %+v", plain)
	}
	full := must(t, run(t, a, "", "user", "export", "--format", "json", "--include-secrets"))
	if !strings.Contains(full.stderr, "warning: this export holds password hashes and authenticator secrets in clear") ||
		!strings.Contains(full.stdout, secret) {
		t.Fatalf("export --include-secrets: %+v", full)
	}
	exportFile := filepath.Join(work, "export.json")
	os.WriteFile(exportFile, []byte(full.stdout), 0o600)
	if r := must(t, run(t, b, "", "user", "import", exportFile)); r.stdout != "imported 2 account(s), 1 authenticator(s), 0 recovery code(s)\n" {
		t.Fatalf("import of the export: %q", r.stdout)
	}
	again := must(t, run(t, b, "", "user", "export", "--format", "json", "--include-secrets"))
	if again.stdout != full.stdout {
		t.Fatalf("export after the round trip differs:\n%s\nwas\n%s", again.stdout, full.stdout)
	}
	if r := run(t, b, "pw-ann"+code(t, secret, time.Now()), "check", "ann"); r.code != 0 {
		t.Fatalf("ann's code after the round trip: %+v", r)
	}
	// The export without secrets cannot make accounts: it says why.
	os.WriteFile(exportFile, []byte(plain.stdout), 0o600)
	if r := run(t, filepath.Join(work, "c"), "", "user", "import", exportFile); r.code != 1 || !strings.Contains(r.stderr, "export.json line 5, password_hash: no password hash") {
		t.Fatalf("import of an export without secrets: %+v", r)
	}
	os.Remove(filepath.Join(a, "sealing.key"))
	if r := run(t, a, "", "user", "export", "--include-secrets"); r.code != 1 || !strings.Contains(r.stderr, "needs the sealing key") || r.stdout != "" {
		t.Fatalf("export --include-secrets without the key: %+v", r)
	}
}

// TestImportGoogleAuthenticator: a ~/.google_authenticator file gives the
// account named by its folder its authenticator and its scratch codes,
// which then work once each as recovery codes (0000-1234-5678 for
// 12345678); an HOTP file is refused.
func TestImportGoogleAuthenticator(t *testing.T) {
	work := t.TempDir()
	dir := filepath.Join(work, "data")
	const secret = "KRUGS4ZANFZSAYJAONSWG4TFOQ"
	home := filepath.Join(work, "home", "alice")
	os.MkdirAll(home, 0o700)
	file := filepath.Join(home, ".google_authenticator")
	os.WriteFile(file, []byte(secret+"\n\" RATE_LIMIT 3 30\n\" WINDOW_SIZE 17\n\" DISALLOW_REUSE\n\" TOTP_AUTH\n12345678\n87654321\n"), 0o600)

	if r := run(t, dir, "", "user", "import", file); r.code != 1 || !strings.Contains(r.stderr, "no account named alice") {
		t.Fatalf("import for an account that is not there: %+v", r)
	}
	must(t, run(t, dir, "classmate\n", "user", "add", "alice", "--password-stdin"))
	if r := must(t, run(t, dir, "", "user", "import", file)); r.stdout != "imported 0 account(s), 1 authenticator(s), 2 recovery code(s); added to 1 existing account(s)\n" {
		t.Fatalf("import: %q", r.stdout)
	}
	if r := run(t, dir, "classmate0000-1234-5678", "check", "alice"); r.code != 0 {
		t.Fatalf("a scratch code as a recovery code: %+v", r)
	}
	if r := run(t, dir, "classmate0000-1234-5678", "check", "alice"); r.code != 1 {
		t.Fatalf("a scratch code used twice: %+v", r)
	}
	if r := run(t, dir, "classmate"+code(t, secret, time.Now()), "check", "alice"); r.code != 0 {
		t.Fatalf("the file's authenticator: %+v", r)
	}
	hotp := filepath.Join(work, "hotp")
	os.WriteFile(hotp, []byte(secret+"\n\" HOTP_COUNTER 1\n"), 0o600)
	if r := run(t, dir, "", "user", "import", "--format", "google-authenticator", "--user", "alice", hotp); r.code != 1 ||
		!strings.Contains(r.stderr, "hotp line 1, secret: the token cannot be moved: an HOTP (counter) token") {
		t.Fatalf("an HOTP file: %+v", r)
	}
	if r := run(t, dir, "", "user", "import", hotp); r.code != 2 {
		t.Fatalf("a file whose format cannot be told: %+v", r)
	}
}
