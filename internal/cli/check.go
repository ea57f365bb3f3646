package cli

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/spf13/cobra"

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
audit log. A code accepted here is used up, as it would be on the wire.`,
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
			if cfg.Audit.File == "-" {
				// Standard error is the person's; the audit trail of a
				// one-off check is the decision printed below.
				cfg.Audit.File = os.DevNull
			}
			log := slog.New(slog.NewTextHandler(a.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
			core, closer, err := server.NewCore(c.Context(), cfg, a.dir(), log)
			if err != nil {
				return err
			}
			defer closer.Close()
			d := core.Verifier.Verify(c.Context(), verifier.Attempt{Protocol: "cli", User: args[0], Secret: secret})
			fmt.Fprintln(a.stdout, d.Result)
			if verbose {
				fmt.Fprintf(a.stderr, "%s: %s\n", d.Result, d.Reason)
			} else {
				fmt.Fprintf(a.stderr, "%s: %s\n", d.Result, publicReason(d))
			}
			if !d.Allowed() {
				return exitError{ExitFailure}
			}
			return nil
		},
	}
	c.Flags().BoolVar(&verbose, "verbose", false, "print the internal reason (as in the audit log)")
	return c
}
