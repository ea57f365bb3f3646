package server

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"path/filepath"
	"strings"

	"github.com/stepgate/stepgate/internal/enroll"
	"github.com/stepgate/stepgate/internal/password"
	"github.com/stepgate/stepgate/internal/store"
	"github.com/stepgate/stepgate/internal/verifier"
	demomail "github.com/stepgate/stepgate/protocols/imap/demo"
)

// DemoUser is the account `make run` creates.
const DemoUser = "demo"

// demo makes sure the demo account exists with two-step active, gives it a
// fresh password (printed once, so a new run never needs an old one), and
// prints its QR code and the exact commands to try.
func demo(ctx context.Context, core *Core, out io.Writer, addrs Addrs, fes frontEnds, dataDir string) error {
	pw, err := demoPassword()
	if err != nil {
		return err
	}
	hash, err := password.Hash(pw)
	if err != nil {
		return err
	}
	st := core.Store
	u, err := st.User(ctx, DemoUser)
	switch {
	case errors.Is(err, store.ErrNotFound):
		u, err = st.AddUser(ctx, store.NewUser{Name: DemoUser, DisplayName: "Demo User", Email: "demo@example.org",
			PasswordHash: hash, Groups: []string{"demo"}})
		if err != nil {
			return fmt.Errorf("demo user: %w", err)
		}
	case err != nil:
		return fmt.Errorf("demo user: %w", err)
	default:
		if err := st.SetPassword(ctx, DemoUser, hash); err != nil {
			return fmt.Errorf("demo user: %w", err)
		}
	}
	auths, err := st.Authenticators(ctx, u.ID, true)
	if err != nil {
		return fmt.Errorf("demo user: %w", err)
	}
	cfg := core.Config
	p := verifier.TOTP{Digits: cfg.TwoStep.Digits, Period: cfg.TwoStep.Period.D(), Skew: cfg.TwoStep.Skew}
	var e *enroll.Enrollment
	if len(auths) == 0 {
		e, err = enroll.Start(ctx, st, DemoUser, "demo", cfg.TwoStep.Issuer, p)
		if err != nil {
			return fmt.Errorf("demo user: %w", err)
		}
		pending, err := st.Authenticators(ctx, u.ID, false)
		if err != nil || len(pending) == 0 {
			return fmt.Errorf("demo user: enrollment not found: %v", err)
		}
		if err := st.ConfirmAuthenticator(ctx, pending[0].ID, 0); err != nil {
			return fmt.Errorf("demo user: %w", err)
		}
	} else {
		e = enroll.Existing(DemoUser, auths[0].Label, auths[0].Secret, cfg.TwoStep.Issuer, p)
	}
	if _, err := core.Verifier.Refresh(ctx); err != nil {
		return err
	}
	// The demo mail servers check the same password, as a real mail
	// server behind stepgate would.
	imapDemo, pop3Demo, smtpDemo := fes.demoMailboxes()
	if imapDemo != nil {
		if err := imapDemo.AddUser(DemoUser, pw); err != nil {
			return fmt.Errorf("demo mailbox: %w", err)
		}
	}
	if pop3Demo != nil {
		pop3Demo.AddUser(DemoUser, pw, []byte(demomail.Welcome(DemoUser)))
	}
	if smtpDemo != nil {
		smtpDemo.AddUser(DemoUser, pw)
	}

	sep := cfg.TwoStep.Separator
	fmt.Fprintf(out, "\nstepgate is running with a DEMO account (database: %s)\n\n", core.Store.Path())
	fmt.Fprintf(out, "  user:      %s\n  password:  %s   (new on every start)\n\n", DemoUser, pw)
	fmt.Fprintf(out, "Scan this with an authenticator app (or type the key %s):\n\n", e.GroupedSecret())
	e.WriteTerminalQR(out)
	fmt.Fprintf(out, "\nThen sign in with the password followed by the app's current %d-digit code:\n\n", cfg.TwoStep.Digits)
	if addrs.LDAP != "" {
		fmt.Fprintf(out, "  ldapwhoami -x -H ldap://%s -D uid=%s,ou=people,%s -w '%s%sCODE'\n",
			addrs.LDAP, DemoUser, cfg.LDAP.BaseDN, pw, sep)
	}
	if addrs.IMAP != "" {
		fmt.Fprintf(out, "  curl -u '%s:%s%sCODE' 'imap://%s/INBOX?ALL'     (demo mailbox, in memory)\n",
			DemoUser, pw, sep, addrs.IMAP)
	}
	if addrs.POP3 != "" {
		fmt.Fprintf(out, "  curl -u '%s:%s%sCODE' 'pop3://%s/1'          (the same mailbox over POP3)\n",
			DemoUser, pw, sep, addrs.POP3)
	}
	if addrs.Submission != "" {
		fmt.Fprintf(out, "  printf 'Subject: hi\\r\\n\\r\\nhello\\r\\n' | curl -u '%s:%s%sCODE' smtp://%s --mail-from demo@example.org --mail-rcpt demo@example.org -T -   (a sink)\n",
			DemoUser, pw, sep, addrs.Submission)
	}
	fmt.Fprintf(out, "  printf '%%s' '%s%sCODE' | %s check %s\n\n", pw, sep, checkCommand(dataDir), DemoUser)
	fmt.Fprintf(out, "The same string keeps working for %s after the code rolls over (a session).\n\n",
		strings.TrimSuffix(cfg.Sessions.Idle.D().String(), "0s"))
	if addrs.Portal != "" {
		fmt.Fprintf(out, "Self-service portal: %s  (sign in as %s with the password and a code: devices,\n"+
			"recovery codes, app passwords; add a user with `user add` to try the first set-up)\n\n", addrs.Portal, DemoUser)
	}
	return nil
}

// checkCommand is how to run this very binary on this data folder from the
// shell that started it: `stepgate` is seldom on PATH (make run builds
// bin/stepgate), and check must reach this server's control socket.
func checkCommand(dataDir string) string {
	exe, err := os.Executable()
	if err != nil {
		exe = "stepgate"
	} else if wd, err := os.Getwd(); err == nil {
		// Above the working folder, ../../x is harder to read than /x.
		if rel, err := filepath.Rel(wd, exe); err == nil && rel != ".." && !strings.HasPrefix(rel, "../") {
			exe = rel
			if !strings.Contains(rel, "/") {
				exe = "./" + rel // a bare name would be looked up on PATH
			}
		}
	}
	cmd := shellQuote(exe)
	if filepath.Clean(dataDir) != defaultDataDir || os.Getenv("STEPGATE_DATA_DIR") != "" {
		cmd += " --data-dir " + shellQuote(dataDir)
	}
	return cmd
}

// defaultDataDir is the command line's default data folder.
const defaultDataDir = "stepgate-data"

// shellQuote quotes s for a POSIX shell unless it needs nothing.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._-+=:,@") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// demoPassword is 12 letters: no digits, so where the code starts is plain.
func demoPassword() (string, error) {
	const letters = "abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ"
	b := make([]byte, 12)
	for i := range b {
		n, err := rand.Int(rand.Reader, big.NewInt(int64(len(letters))))
		if err != nil {
			return "", err
		}
		b[i] = letters[n.Int64()]
	}
	return string(b), nil
}
