package cli

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/stepgate/stepgate/internal/admin"
	"github.com/stepgate/stepgate/internal/store"
)

func (a *app) userDisableCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "disable NAME",
		Short: "Disable an account: its sessions end and its open connections close now",
		Args:  exactArgs("NAME"),
		RunE: func(c *cobra.Command, args []string) error {
			return a.withStore(c.Context(), func(st *store.Store) error {
				u, err := existingUser(c.Context(), st, args[0])
				if err != nil {
					return err
				}
				if err := st.SetDisabled(c.Context(), u.Name, true); err != nil {
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
			return a.withStore(c.Context(), func(st *store.Store) error {
				u, err := existingUser(c.Context(), st, args[0])
				if err != nil {
					return err
				}
				if !u.Disabled {
					// Enabling moves the epoch, which would end the live
					// sessions of an account nobody meant to touch.
					fmt.Fprintf(a.stdout, "%s is not disabled; nothing changed\n", u.Name)
					return nil
				}
				if err := st.SetDisabled(c.Context(), u.Name, false); err != nil {
					return err
				}
				a.notifyServer(c.Context())
				fmt.Fprintf(a.stdout, "enabled %s; sessions from before it was disabled stay ended, so sign in again with password and a fresh code\n", u.Name)
				return nil
			})
		},
	}
}

// existingUser looks an account up, saying plainly when there is none.
func existingUser(ctx context.Context, st *store.Store, name string) (*store.User, error) {
	u, err := st.User(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("no account named %q (stepgate user list shows them)", name)
	}
	return u, err
}
