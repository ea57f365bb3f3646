package cli

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/stepgate/stepgate/internal/account"
	"github.com/stepgate/stepgate/internal/admin"
)

func (a *app) userDisableCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "disable NAME",
		Short: "Disable an account: its sessions end and its open connections close now",
		Args:  exactArgs("NAME"),
		RunE: func(c *cobra.Command, args []string) error {
			return a.withAccounts(c.Context(), account.Options{}, func(acc *account.Service) error {
				u, err := acc.Disable(c.Context(), args[0])
				if err != nil {
					return err
				}
				was := ""
				if u.Disabled {
					was = " (it was already)"
				}
				// The store change alone is enough for a server to end the
				// sessions at its next poll; the revoke makes it happen
				// before this command returns, and says how many ended.
				n, err := admin.NewClient(a.dir().Socket()).Revoke(c.Context(), admin.RevokeRequest{User: u.Name})
				switch {
				case err == nil:
					fmt.Fprintf(a.stdout, "disabled %s%s; the running server ended %d session(s) and closed their connections\n", u.Name, was, n)
				case errors.Is(err, admin.ErrNotRunning):
					fmt.Fprintf(a.stdout, "disabled %s%s; stepgate serve is not running, and sessions it saved will not come back when it starts\n", u.Name, was)
				default:
					fmt.Fprintf(a.stdout, "disabled %s%s\n", u.Name, was)
					fmt.Fprintf(a.stderr, "warning: the running server was not told of the change (it ends the sessions within a second by itself): %v\n", err)
				}
				return nil
			})
		},
	}
}

func (a *app) userEnableCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "enable NAME",
		Short: "Enable a disabled account; it signs in again with password and a fresh code",
		Args:  exactArgs("NAME"),
		RunE: func(c *cobra.Command, args []string) error {
			return a.withAccounts(c.Context(), account.Options{}, func(acc *account.Service) error {
				u, changed, err := acc.Enable(c.Context(), args[0])
				if err != nil {
					return err
				}
				if !changed {
					fmt.Fprintf(a.stdout, "%s is not disabled; nothing changed\n", u.Name)
					return nil
				}
				a.notifyServer(c.Context())
				fmt.Fprintf(a.stdout, "enabled %s; sessions from before it was disabled stay ended, so sign in again with password and a fresh code\n", u.Name)
				return nil
			})
		},
	}
}
