package importfile

import (
	"errors"
	"strings"
	"testing"
)

// TestLDIF reads what slapcat prints: a version line, comments, folded
// lines (also inside base64), CRLF line ends, base64 values, several
// entries, and follows oathTOTPToken to the token and its parameters.
func TestLDIF(t *testing.T) {
	data := "version: 1\r\n" +
		"# a comment\r\n" +
		"\r\n" +
		"dn: uid=ann,ou=people,dc=example,dc=org\r\n" +
		"objectClass: inetOrgPerson\r\n" +
		"objectClass: oathTOTPUser\r\n" +
		"oathTOTPToken: cn=ann,ou=otp,dc=example,dc=org\r\n" +
		"uid: ann\r\n" +
		"cn:: Wm/DqyBBbm4=\r\n" + // "Zoë Ann"
		"mail: ann@exa\r\n mple.org\r\n" +
		"userPassword:: e1NTSEF9QU9iWThnVUVMTUJ1N2ZnOGI0WUJa\r\n VXZ5Uld3MDZzeHY=\r\n" +
		"\r\n" +
		"dn: cn=ann,ou=otp,dc=example,dc=org\r\n" +
		"oathTOTPParams: cn=params,ou=otp,dc=example,dc=org\r\n" +
		"oathSecret:: MTIzNDU2Nzg5MDEyMzQ1Njc4OTA=\r\n" +
		"oathTOTPLastTimeStep: 57000000\r\n" +
		"\r\n" +
		"dn: cn=params,ou=otp,dc=example,dc=org\r\n" +
		"oathOTPLength: 6\r\n" +
		"oathHMACAlgorithm: 1.2.840.113549.2.7\r\n" +
		"oathTOTPTimeStepPeriod: 30\r\n"
	accs, err := Parse([]byte(data), LDIF, Options{Source: "d.ldif"})
	if err != nil {
		t.Fatal(err)
	}
	if len(accs) != 1 {
		t.Fatalf("%d accounts, want 1", len(accs))
	}
	a := accs[0]
	if a.Name != "ann" || a.DisplayName != "Zoë Ann" || a.Email != "ann@example.org" || a.PasswordHash != "{SSHA}AObY8gUELMBu7fg8b4YBZUvyRWw06sxv" || a.Line != 4 {
		t.Fatalf("account = %+v", a)
	}
	if l := a.At("password_hash"); l.Line != 12 || l.Field != "userPassword" {
		t.Fatalf("userPassword at %+v, want line 12", l)
	}
	au := a.Authenticators[0]
	if au.Secret != "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ" || au.LastStep != 57000000 || au.Digits != 6 || au.Algorithm != "SHA1" || au.Period.Seconds() != 30 || au.Line != 7 {
		t.Fatalf("authenticator = %+v", au)
	}
}

func TestLDIFErrorsNameTheLine(t *testing.T) {
	data := "dn: uid=a,dc=x\nuid: a\nuserPassword:: !!notbase64\noathTOTPToken: cn=missing,dc=x\n\n" +
		"dn: uid=b,dc=x\nchangetype: modify\n\nno colon here\n"
	_, err := Parse([]byte(data), LDIF, Options{Source: "f"})
	var es Errors
	if !errors.As(err, &es) {
		t.Fatalf("err = %v", err)
	}
	got := err.Error()
	for _, want := range []string{
		"f line 3, userPassword: the value after :: is not base64",
		"f line 4, oathTOTPToken: the token entry \"cn=missing,dc=x\" is not in the file",
		"f line 7, changetype: change records are not accounts",
		"f line 9: ",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("errors lack %q:\n%s", want, got)
		}
	}
}

func TestJSONLines(t *testing.T) {
	data := `{"format": "stepgate-accounts/1", "secrets": true, "accounts": [
  {"name": "ann", "password_hash": "h"},
  {"name": "bob",
   "pasword_hash": "h"},
  {"name": 7}
]}`
	accs, err := Parse([]byte(data), JSON, Options{Source: "e.json"})
	if len(accs) != 1 || accs[0].Line != 2 {
		t.Fatalf("accounts = %+v", accs)
	}
	for _, want := range []string{`e.json line 3: unknown field "pasword_hash"`, "e.json line 5: field name is a JSON number, want string"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("errors lack %q: %v", want, err)
		}
	}
}

func TestCSVColumns(t *testing.T) {
	if _, err := Parse([]byte("name,password,email\n"), CSV, Options{}); err == nil ||
		!strings.Contains(err.Error(), `line 1, column 2: unknown column "password"`) || !strings.Contains(err.Error(), "no password_hash column") {
		t.Fatalf("bad header: %v", err)
	}
	accs, err := Parse([]byte("name,password_hash,recovery_codes,disabled\nann,h,1111-2222-3333;4444-5555-6666,yes\nbob,h,,maybe\n"), CSV, Options{})
	if err == nil || !strings.Contains(err.Error(), `line 3, disabled (column 4): "maybe" is not true or false`) {
		t.Fatalf("bad flag: %v", err)
	}
	if len(accs[0].RecoveryCodes) != 2 || !accs[0].Disabled {
		t.Fatalf("ann = %+v", accs[0])
	}
}

func TestGoogleAuthenticatorFile(t *testing.T) {
	accs, err := Parse([]byte("JBSWY3DPEHPK3PXP\n\" TOTP_AUTH\n\" DISALLOW_REUSE 5700000 5700002\n12345678\nnope\n"), GoogleAuthenticator,
		Options{Source: "/home/carol/.google_authenticator"})
	if err == nil || !strings.Contains(err.Error(), "line 5: neither an option line") {
		t.Fatalf("err = %v", err)
	}
	a := accs[0]
	if a.Name != "carol" || !a.Existing || a.RecoveryCodes[0] != "0000-1234-5678" || a.Authenticators[0].LastStep != 5700002 || a.Authenticators[0].Refused != "" {
		t.Fatalf("account = %+v", a)
	}
	if _, err := Parse([]byte("JBSWY3DPEHPK3PXP\n"), GoogleAuthenticator, Options{Source: "stdin"}); err == nil || !strings.Contains(err.Error(), "--user") {
		t.Fatalf("stdin without --user: %v", err)
	}
}
