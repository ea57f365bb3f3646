package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"github.com/stepgate/stepgate/internal/admin"
	"github.com/stepgate/stepgate/internal/config"
	"github.com/stepgate/stepgate/internal/server"
	"github.com/stepgate/stepgate/internal/verifier"
)

// publicReason is what check prints on standard error: the one generic
// failure for every reason a guesser could learn from, as on the wire.
func publicReason(d verifier.Decision) string {
	switch {
	case d.Allowed():
		return "signed in (" + string(d.Reason) + ")"
	case d.Message != "":
		return d.Message
	case d.Unavailable():
		return "the password backend is unavailable; try again later"
	case d.Busy():
		return "too many sign-ins at once; try again shortly"
	case d.Reason == verifier.ReasonError:
		return "internal error (see the log)"
	}
	return "invalid credentials"
}

func (a *app) checkCommand() *cobra.Command {
	var verbose bool
	c := &cobra.Command{
		Use:   "check NAME",
		Short: "Decide a sign-in: reads password(+code) on stdin, prints allow or deny",
		Long: `check runs the very decision a front end runs for NAME with the password
(and appended code) read from standard input, prints allow or deny, and
exits 0 or 1. Like the front ends it gives one generic reason for every
failure; --verbose prints the internal reason an administrator sees in the
audit log. A code accepted here is used up, as it would be on the wire.

With a server running on the data folder, check asks it (over
control.sock), so a sign-in here opens a session there and the same
string then works over LDAP and IMAP; without one it decides on its own.`,
		Args: exactArgs("NAME"),
		RunE: func(c *cobra.Command, args []string) error {
			cfg, err := a.config()
			if err != nil {
				return err
			}
			if err := cfg.Validate(); err != nil {
				return err
			}
			secret, err := readSecret(a.stdin)
			if err != nil {
				return err
			}
			d, local, err := a.decide(c.Context(), cfg, args[0], secret)
			if err != nil {
				return err
			}
			fmt.Fprintln(a.stdout, d.Result)
			if verbose {
				fmt.Fprintf(a.stderr, "%s: %s\n", d.Result, d.Reason)
			} else {
				fmt.Fprintf(a.stderr, "%s: %s\n", d.Result, publicReason(d))
			}
			if !d.Allowed() {
				return exitError{ExitFailure}
			}
			if local {
				// Only a success leaves something behind: a used code and
				// a session, both in the store, where a server finds them.
				fmt.Fprintf(a.stderr, "note: no server runs on %s; decided here, and the session is in the store for the server\n", a.dir().Path)
			}
			return nil
		},
	}
	c.Flags().BoolVar(&verbose, "verbose", false, "print the internal reason (as in the audit log)")
	return c
}

// decide asks the server running on the data folder, so that the check
// shares its sessions and its replay guard: deciding in this process would
// use up the code and open a session that the server never sees. With no
// server it decides here (local is true).
func (a *app) decide(ctx context.Context, cfg *config.Config, user, secret string) (d verifier.Decision, local bool, err error) {
	d, err = admin.NewClient(a.dir().Socket()).Check(ctx, user, secret)
	if !errors.Is(err, admin.ErrNotRunning) {
		return d, false, err
	}
	if cfg.Audit.File == "-" {
		// Standard error is the person's; the audit trail of a
		// one-off check is the decision printed below.
		cfg.Audit.File = os.DevNull
	}
	log := slog.New(slog.NewTextHandler(a.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	core, closer, err := server.NewCore(ctx, cfg, a.storeDir(cfg), log)
	if err != nil {
		return verifier.Decision{}, true, err
	}
	defer closer.Close()
	return core.Verifier.Verify(ctx, verifier.Attempt{Protocol: "cli", User: user, Secret: secret}), true, nil
}
