package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"regexp"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/stepgate/stepgate/internal/enroll"
	"github.com/stepgate/stepgate/internal/password"
	"github.com/stepgate/stepgate/internal/store"
	"github.com/stepgate/stepgate/internal/verifier"
)

// maxSecret bounds what is read from standard input as a password.
const maxSecret = 1024

// readSecret reads a password (or password+code) from r: everything up to
// EOF, with one trailing newline removed.
func readSecret(r io.Reader) (string, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxSecret+2))
	if err != nil {
		return "", fmt.Errorf("reading standard input: %w", err)
	}
	s := string(b)
	if t, ok := strings.CutSuffix(s, "\n"); ok {
		s = strings.TrimSuffix(t, "\r")
	}
	if len(s) > maxSecret {
		return "", fmt.Errorf("standard input holds more than %d bytes; that is not a password", maxSecret)
	}
	if strings.ContainsAny(s, "\n\r\x00") {
		return "", errors.New("standard input holds more than one line")
	}
	return s, nil
}

func (a *app) withStore(ctx context.Context, fn func(*store.Store) error) error {
	st, err := a.dir().Open(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	return fn(st)
}

func (a *app) userCommand() *cobra.Command {
	return group("user", "Manage accounts and their authenticators",
		a.userAddCommand(), a.userPasswdCommand(), a.userEnrollCommand(), a.userConfirmCommand(),
		a.userListCommand(), a.userDisableCommand(), a.userEnableCommand(), a.userDisable2SVCommand(), a.userDeleteCommand(),
		a.userMethodCommand(), a.userRecoveryCodesCommand())
}

var phoneRE = regexp.MustCompile(`^\+[1-9][0-9]{6,14}$`)

// normalisePhone accepts +CC NNN... with spaces, dots, dashes or brackets
// and returns the E.164 form.
func normalisePhone(p string) (string, error) {
	clean := strings.Map(func(r rune) rune {
		switch r {
		case ' ', '-', '.', '(', ')':
			return -1
		}
		return r
	}, p)
	if !phoneRE.MatchString(clean) {
		return "", fmt.Errorf("phone %q is not an international number: write it as +CC followed by the number, e.g. +44 20 7946 0958", p)
	}
	return clean, nil
}

func (a *app) userAddCommand() *cobra.Command {
	var stdin, service bool
	var email, phone, display string
	var groups []string
	c := &cobra.Command{
		Use:   "add NAME --password-stdin [--email E] [--phone P] [--group G]... [--service]",
		Short: "Create an account; the password is read from standard input",
		Args:  exactArgs("NAME"),
		RunE: func(c *cobra.Command, args []string) error {
			if !stdin {
				return usagef("--password-stdin is required: passwords are never taken from the command line")
			}
			if _, err := store.AccountName(args[0]); err != nil {
				return usageError{err}
			}
			if email != "" {
				addr, err := mail.ParseAddress(email)
				if err != nil || addr.Address != email {
					return usagef("--email %q is not a plain e-mail address", email)
				}
			}
			if phone != "" {
				p, err := normalisePhone(phone)
				if err != nil {
					return usageError{err}
				}
				phone = p
			}
			for _, g := range groups {
				if err := store.ValidName(g); err != nil {
					return usagef("--group: %v", err)
				}
			}
			pw, err := readSecret(a.stdin)
			if err != nil {
				return err
			}
			if pw == "" {
				return errors.New("empty password on standard input")
			}
			hash, err := password.Hash(pw)
			if err != nil {
				return err
			}
			return a.withStore(c.Context(), func(st *store.Store) error {
				u, err := st.AddUser(c.Context(), store.NewUser{Name: args[0], DisplayName: display, Email: email,
					Phone: phone, PasswordHash: hash, Service: service, Groups: groups})
				if err != nil {
					return err
				}
				a.notifyServer(c.Context())
				kind := "user"
				if service {
					kind = "service account"
				}
				fmt.Fprintf(a.stdout, "added %s %s\n", kind, u.Name)
				return nil
			})
		},
	}
	c.Flags().BoolVar(&stdin, "password-stdin", false, "read the password from standard input (required)")
	c.Flags().StringVar(&email, "email", "", "e-mail address")
	c.Flags().StringVar(&phone, "phone", "", "phone number, international form (+CC...)")
	c.Flags().StringVar(&display, "display-name", "", "name shown in the directory")
	c.Flags().StringArrayVar(&groups, "group", nil, "put the account in this group (repeatable)")
	c.Flags().BoolVar(&service, "service", false, "an application's account: binds to LDAP with a password alone, never signs in to mail")
	return c
}

func (a *app) userPasswdCommand() *cobra.Command {
	var stdin bool
	c := &cobra.Command{
		Use:   "passwd NAME --password-stdin",
		Short: "Set an account's password; every session of the account ends",
		Args:  exactArgs("NAME"),
		RunE: func(c *cobra.Command, args []string) error {
			if !stdin {
				return usagef("--password-stdin is required: passwords are never taken from the command line")
			}
			pw, err := readSecret(a.stdin)
			if err != nil {
				return err
			}
			if pw == "" {
				return errors.New("empty password on standard input")
			}
			hash, err := password.Hash(pw)
			if err != nil {
				return err
			}
			return a.withStore(c.Context(), func(st *store.Store) error {
				if err := st.SetPassword(c.Context(), args[0], hash); err != nil {
					return err
				}
				a.notifyServer(c.Context())
				fmt.Fprintf(a.stdout, "password changed for %s; its sessions have ended\n", args[0])
				return nil
			})
		},
	}
	c.Flags().BoolVar(&stdin, "password-stdin", false, "read the password from standard input (required)")
	return c
}

// totpParams are the code parameters of the configuration in effect.
func (a *app) totpParams() (verifier.TOTP, string, error) {
	cfg, err := a.config()
	if err != nil {
		return verifier.TOTP{}, "", err
	}
	if err := cfg.Validate(); err != nil {
		return verifier.TOTP{}, "", err
	}
	return verifier.TOTP{Digits: cfg.TwoStep.Digits, Period: cfg.TwoStep.Period.D(), Skew: cfg.TwoStep.Skew}, cfg.TwoStep.Issuer, nil
}

func (a *app) userEnrollCommand() *cobra.Command {
	var label, qrFile string
	var asJSON bool
	c := &cobra.Command{
		Use:   "enroll NAME [--label L] [--json] [--qr FILE.png]",
		Short: "Add an authenticator app; it works once confirmed with a first code",
		Args:  exactArgs("NAME"),
		RunE: func(c *cobra.Command, args []string) error {
			p, issuer, err := a.totpParams()
			if err != nil {
				return err
			}
			return a.withStore(c.Context(), func(st *store.Store) error {
				e, err := enroll.Start(c.Context(), st, args[0], label, issuer, p)
				if err != nil {
					return err
				}
				if qrFile != "" {
					if err := e.WritePNG(qrFile); err != nil {
						return err
					}
				}
				if asJSON {
					return json.NewEncoder(a.stdout).Encode(map[string]string{
						"user": e.User, "label": e.Label, "secret": e.Secret, "uri": e.URI})
				}
				fmt.Fprintf(a.stdout, "Authenticator %q for %s (pending until confirmed)\n\n", e.Label, e.User)
				fmt.Fprintf(a.stdout, "URI:  %s\nKey:  %s\n\n", e.URI, e.GroupedSecret())
				e.WriteTerminalQR(a.stdout)
				if qrFile != "" {
					fmt.Fprintf(a.stdout, "\nQR code written to %s\n", qrFile)
				}
				fmt.Fprintf(a.stdout, "\nScan it, then run: stepgate user confirm %s CODE\n", e.User)
				return nil
			})
		},
	}
	c.Flags().StringVar(&label, "label", enroll.DefaultLabel, "name of this authenticator (a user may have several)")
	c.Flags().BoolVar(&asJSON, "json", false, "print one JSON object: user, label, secret, uri")
	c.Flags().StringVar(&qrFile, "qr", "", "also write the QR code to this PNG file")
	return c
}

func (a *app) userConfirmCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "confirm NAME CODE",
		Short: "Confirm a new authenticator with the code it shows; two-step turns on",
		Args:  exactArgs("NAME", "CODE"),
		RunE: func(c *cobra.Command, args []string) error {
			p, _, err := a.totpParams()
			if err != nil {
				return err
			}
			return a.withStore(c.Context(), func(st *store.Store) error {
				label, err := enroll.Confirm(c.Context(), st, p, args[0], args[1], time.Now())
				if err != nil {
					return err
				}
				state, err := a.afterAuthenticatorConfirmed(c.Context(), st, args[0], label)
				if err != nil {
					return err
				}
				a.notifyServer(c.Context())
				if state == store.TwoStepPending {
					a.printTwoStep(args[0], state)
					return nil
				}
				fmt.Fprintf(a.stdout, "two-step verification is on for %s (authenticator %q)\n", args[0], label)
				return nil
			})
		},
	}
}

// userJSON is an account as `user list --json` prints it: never a secret.
type userJSON struct {
	Name           string    `json:"name"`
	DisplayName    string    `json:"display_name"`
	Email          string    `json:"email"`
	Phone          string    `json:"phone"`
	TwoStep        string    `json:"two_step"`
	Authenticators int       `json:"authenticators"`
	Pending        int       `json:"pending_authenticators"`
	Service        bool      `json:"service"`
	Disabled       bool      `json:"disabled"`
	Groups         []string  `json:"groups"`
	Created        time.Time `json:"created"`
}

func (a *app) userListCommand() *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "list [--json]",
		Short: "List accounts (never a secret)",
		Args:  noArgs,
		RunE: func(c *cobra.Command, args []string) error {
			return a.withStore(c.Context(), func(st *store.Store) error {
				users, err := st.Users(c.Context())
				if err != nil {
					return err
				}
				counts, err := st.AuthenticatorCounts(c.Context())
				if err != nil {
					return err
				}
				out := make([]userJSON, 0, len(users))
				for _, u := range users {
					n := counts[u.ID]
					g := u.Groups
					if g == nil {
						g = []string{}
					}
					out = append(out, userJSON{Name: u.Name, DisplayName: u.DisplayName, Email: u.Email, Phone: u.Phone,
						TwoStep: string(u.TwoStep), Authenticators: n.Confirmed, Pending: n.Pending, Service: u.Service,
						Disabled: u.Disabled, Groups: g, Created: u.Created.UTC()})
				}
				if asJSON {
					enc := json.NewEncoder(a.stdout)
					enc.SetIndent("", "  ")
					return enc.Encode(out)
				}
				w := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(w, "NAME\tTWO-STEP\tAUTHENTICATORS\tKIND\tGROUPS\tEMAIL")
				for _, u := range out {
					kind := "person"
					if u.Service {
						kind = "service"
					}
					if u.Disabled {
						kind += " (disabled)"
					}
					fmt.Fprintf(w, "%s\t%s\t%d\t%s\t%s\t%s\n", u.Name, u.TwoStep, u.Authenticators, kind, strings.Join(u.Groups, ","), u.Email)
				}
				return w.Flush()
			})
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return c
}

func (a *app) userDisable2SVCommand() *cobra.Command {
	return a.confirmedUserCommand("disable-2sv", "Remove every authenticator of an account and turn two-step off",
		"this removes every authenticator of %s",
		func(ctx context.Context, st *store.Store, name string) error {
			if err := st.DisableTwoStep(ctx, name); err != nil {
				return err
			}
			a.alertTwoStepDisabled(ctx, st, name)
			return nil
		},
		"two-step verification is off for %s; its authenticators are removed and its sessions have ended\n")
}

func (a *app) userDeleteCommand() *cobra.Command {
	return a.confirmedUserCommand("delete", "Delete an account", "this deletes %s for good",
		func(ctx context.Context, st *store.Store, name string) error { return st.DeleteUser(ctx, name) },
		"deleted %s\n")
}

// confirmedUserCommand is a command that changes one account for good and
// so wants --yes.
func (a *app) confirmedUserCommand(verb, short, warning string, do func(context.Context, *store.Store, string) error, done string) *cobra.Command {
	var yes bool
	c := &cobra.Command{
		Use:   verb + " NAME --yes",
		Short: short,
		Args:  exactArgs("NAME"),
		RunE: func(c *cobra.Command, args []string) error {
			if !yes {
				return usagef(warning+"; add --yes to do it", args[0])
			}
			return a.withStore(c.Context(), func(st *store.Store) error {
				if err := do(c.Context(), st, args[0]); err != nil {
					return err
				}
				a.notifyServer(c.Context())
				fmt.Fprintf(a.stdout, done, args[0])
				return nil
			})
		},
	}
	c.Flags().BoolVar(&yes, "yes", false, "confirm")
	return c
}
