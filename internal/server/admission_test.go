package server

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"
	goldap "github.com/go-ldap/ldap/v3"
	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"

	"github.com/stepgate/stepgate/internal/config"
	"github.com/stepgate/stepgate/internal/datadir"
	"github.com/stepgate/stepgate/internal/password"
	"github.com/stepgate/stepgate/internal/store"
	"github.com/stepgate/stepgate/internal/testenv/dovecot"
)

// TestAdmissionAcrossFrontEnds: 64 wrong passwords (each with the right
// code) and 64 wrong codes against one user, half through the LDAP front
// end and half through the IMAP front end in front of a real Dovecot, all
// at once: at most the budget of 5 is evaluated (counted in the audit
// log), every other attempt is refused as locked out, and afterwards the
// right password with a fresh code is refused too.
func TestAdmissionAcrossFrontEnds(t *testing.T) {
	a := startAlice(t, func(c *config.Config) {
		c.Limits.MaxConnsPerAddress = 1000 // 128 clients on one loopback address
	})
	addrs, auditFile, key := a.addrs, a.auditFile, a.key
	code, _ := totp.GenerateCode(key.Secret(), time.Now())
	wrong := string('0'+(code[0]-'0'+1)%10) + code[1:]

	const n = 128
	var wg sync.WaitGroup
	start := make(chan struct{})
	refused := make(chan string, n)
	for i := 0; i < n; i++ {
		secret := "guess" + string(rune('a'+i%26)) + code // wrong password, right code
		if i%2 == 1 {
			secret = "classmate" + wrong // right password, wrong code
		}
		viaIMAP := i%4 >= 2
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			if viaIMAP {
				c, err := imapclient.DialInsecure(addrs.IMAP, nil)
				if err != nil {
					refused <- "imap dial: " + err.Error()
					return
				}
				defer c.Close()
				if err := c.Login("alice", secret).Wait(); err == nil {
					refused <- "imap login succeeded"
				}
				return
			}
			c, err := goldap.DialURL("ldap://" + addrs.LDAP)
			if err != nil {
				refused <- "ldap dial: " + err.Error()
				return
			}
			defer c.Close()
			if err := c.Bind("uid=alice,ou=people,dc=example,dc=org", secret); !goldap.IsErrorWithCode(err, goldap.LDAPResultInvalidCredentials) {
				refused <- "ldap bind: " + errString(err)
			}
		}()
	}
	close(start)
	wg.Wait()
	close(refused)
	for msg := range refused {
		t.Error(msg)
	}

	// Count the decisions the audit log holds for alice.
	deadline := time.Now().Add(10 * time.Second)
	var evaluated, locked int
	for {
		evaluated, locked = 0, 0
		raw, _ := os.ReadFile(auditFile)
		for _, line := range strings.Split(string(raw), "\n") {
			var ev struct {
				Msg, User, Reason string
				Count             int
			}
			if json.Unmarshal([]byte(line), &ev) != nil || ev.User != "alice" {
				continue
			}
			switch {
			case ev.Msg == "decision" && (ev.Reason == "locked_out" || ev.Reason == "repeated_failure"):
				locked++ // refused without an evaluation
			case ev.Msg == "decision":
				evaluated++
			}
		}
		if evaluated+locked >= n || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if evaluated > 5 {
		t.Fatalf("%d of %d concurrent guesses were evaluated, want at most 5 (%d locked out)", evaluated, n, locked)
	}
	if evaluated == 0 {
		t.Fatal("no guess was evaluated: the audit log holds no decision for alice")
	}

	// The owner, with the right password and a fresh code, waits out the
	// lockout like everyone else.
	next, _ := totp.GenerateCode(key.Secret(), time.Now().Add(30*time.Second))
	c, err := goldap.DialURL("ldap://" + addrs.LDAP)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Bind("uid=alice,ou=people,dc=example,dc=org", "classmate"+next); err == nil {
		t.Fatal("signed in while locked out")
	}
}

// alice is a running server with LDAP and IMAP (in front of a real
// Dovecot), and alice enrolled with an authenticator: password classmate
// on both sides.
type alice struct {
	addrs     Addrs
	auditFile string
	key       *otp.Key
}

func startAlice(t *testing.T, mod func(*config.Config)) alice {
	t.Helper()
	t.Setenv(datadir.KeyFileEnv, "")
	dc := dovecot.Start(t, dovecot.Options{Users: map[string]string{"alice": "classmate"}})
	dir := datadir.New(filepath.Join(t.TempDir(), "data"))
	ctx := context.Background()
	st, err := dir.Open(ctx)
	if err != nil {
		t.Fatal(err)
	}
	h, _ := password.Hash("classmate")
	if _, err := st.AddUser(ctx, store.NewUser{Name: "alice", PasswordHash: h}); err != nil {
		t.Fatal(err)
	}
	key, _ := totp.Generate(totp.GenerateOpts{Issuer: "stepgate", AccountName: "alice"})
	au, err := st.AddAuthenticator(ctx, "alice", "phone", key.Secret())
	if err != nil {
		t.Fatal(err)
	}
	if err := st.ConfirmAuthenticator(ctx, au.ID, 0); err != nil {
		t.Fatal(err)
	}
	st.Close()
	auditFile := filepath.Join(t.TempDir(), "audit.log")
	_, addrs, _ := startWith(t, dir, false, nil, func(c *config.Config) {
		c.LDAP.Listen, c.IMAP.Listen = "127.0.0.1:0", "127.0.0.1:0"
		c.IMAP.Upstream = &config.IMAPUpstream{Host: "127.0.0.1", Port: dc.Port(), TLS: "none"}
		c.Audit.File = auditFile
		if mod != nil {
			mod(c)
		}
	})
	return alice{addrs: addrs, auditFile: auditFile, key: key}
}

func errString(err error) string {
	if err == nil {
		return "succeeded"
	}
	return err.Error()
}
