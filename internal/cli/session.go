package cli

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/stepgate/stepgate/internal/admin"
)

func (a *app) sessionCommand() *cobra.Command {
	return group("session", "List and revoke sessions of the running server", a.sessionListCommand(), a.sessionRevokeCommand())
}

func (a *app) sessionListCommand() *cobra.Command {
	var user string
	var asJSON bool
	c := &cobra.Command{
		Use:   "list [--user NAME] [--json]",
		Short: "List live sessions",
		Args:  noArgs,
		RunE: func(c *cobra.Command, args []string) error {
			ss, err := admin.NewClient(a.dir().Socket()).Sessions(c.Context(), user)
			if err != nil {
				return err
			}
			return printList(a.stdout, asJSON, ss, "ID\tUSER\tPROTOCOL\tREMOTE\tCREATED\tLAST USED\tEXPIRES", func(s admin.SessionInfo) string {
				return fmt.Sprintf("%s\t%s\t%s\t%s\t%s\t%s\t%s", s.ID, s.User, s.Protocol, s.Remote,
					s.Created.Format(time.RFC3339), s.LastUsed.Format(time.RFC3339), s.Expires.Format(time.RFC3339))
			})
		},
	}
	c.Flags().StringVar(&user, "user", "", "only this user's sessions")
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return c
}

func (a *app) sessionRevokeCommand() *cobra.Command {
	var user string
	c := &cobra.Command{
		Use:   "revoke (--user NAME | ID)",
		Short: "End one session, or every session of a user; their connections close",
		Args: func(c *cobra.Command, args []string) error {
			if (user == "") == (len(args) == 0) || len(args) > 1 {
				return usagef("give either --user NAME or one session ID")
			}
			return nil
		},
		RunE: func(c *cobra.Command, args []string) error {
			req := admin.RevokeRequest{User: user}
			if len(args) == 1 {
				req = admin.RevokeRequest{ID: args[0]}
			}
			n, err := admin.NewClient(a.dir().Socket()).Revoke(c.Context(), req)
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "revoked %d session(s)\n", n)
			return nil
		},
	}
	c.Flags().StringVar(&user, "user", "", "revoke every session of this user")
	return c
}
