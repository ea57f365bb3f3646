package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/spf13/cobra"

	"github.com/stepgate/stepgate/internal/account"
	"github.com/stepgate/stepgate/internal/config"
	"github.com/stepgate/stepgate/internal/enroll"
	"github.com/stepgate/stepgate/internal/server"
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

// readPassword reads a new password from r. An empty one is refused here,
// before the store is opened (or created).
func readPassword(r io.Reader) (string, error) {
	pw, err := readSecret(r)
	if err != nil {
		return "", err
	}
	if pw == "" {
		return "", errors.New("empty password on standard input")
	}
	return pw, nil
}

// invalidUsage turns a request that account refused as malformed into a
// usage error, in the words of the flag it came from.
func invalidUsage(err error) error {
	var inv *account.InvalidError
	if !errors.As(err, &inv) {
		return err
	}
	switch inv.Field {
	case "email":
		return usagef("--email %v", inv.Err)
	case "group":
		return usagef("--group: %v", inv.Err)
	}
	return usageError{err}
}

func (a *app) withStore(ctx context.Context, fn func(*store.Store) error) error {
	// The store's section alone: an account command should not stop on
	// a problem in a part of the file that only serve reads.
	cfg, err := a.config()
	if err != nil {
		return err
	}
	if err := cfg.ValidateStore(); err != nil {
		return err
	}
	st, err := a.storeDir(cfg).Open(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	return fn(st)
}

// withAccounts opens the store and gives fn the account actions on it.
// The delivery of codes is built from the configuration only if an action
// asks for it, so that a broken configuration stops only those.
func (a *app) withAccounts(ctx context.Context, o account.Options, fn func(*account.Service) error) error {
	return a.withStore(ctx, func(st *store.Store) error {
		if o.Delivery == nil {
			o.Delivery = a.deliveryFor(st, nil)
		}
		return fn(account.New(st, o))
	})
}

func (a *app) userCommand() *cobra.Command {
	return group("user", "Manage accounts and their authenticators",
		a.userAddCommand(), a.userPasswdCommand(), a.userEnrollCommand(), a.userConfirmCommand(),
		a.userListCommand(), a.userDisableCommand(), a.userEnableCommand(), a.userDisable2SVCommand(), a.userDeleteCommand(),
		a.userMethodCommand(), a.userRecoveryCodesCommand(), a.userImportCommand(), a.userExportCommand())
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
			nu, err := account.NewUser{Name: args[0], DisplayName: display, Email: email, Phone: phone,
				Groups: groups, Service: service}.Check()
			if err != nil {
				return invalidUsage(err)
			}
			if nu.Password, err = readPassword(a.stdin); err != nil {
				return err
			}
			return a.withAccounts(c.Context(), account.Options{}, func(acc *account.Service) error {
				u, err := acc.AddUser(c.Context(), nu)
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
			pw, err := readPassword(a.stdin)
			if err != nil {
				return err
			}
			return a.withAccounts(c.Context(), account.Options{}, func(acc *account.Service) error {
				if err := acc.SetPassword(c.Context(), args[0], pw); err != nil {
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

// codeOptions are the account options with the code parameters of the
// configuration in effect, read before the store is opened.
func (a *app) codeOptions() (account.Options, error) {
	cfg, err := a.config()
	if err != nil {
		return account.Options{}, err
	}
	if err := cfg.Validate(); err != nil {
		return account.Options{}, err
	}
	return account.Options{
		TOTP:   verifier.TOTP{Digits: cfg.TwoStep.Digits, Period: cfg.TwoStep.Period.D(), Skew: cfg.TwoStep.Skew},
		Issuer: cfg.TwoStep.Issuer,
	}, nil
}

// upstreamOptions tells the account actions where passwords are checked
// upstream, so that enrolling a person known only there makes their row:
// the directory of ldap.upstream, or a mail server that checks logins
// (imap.upstream without a master user, pop3.upstream or
// submission.upstream, and no directory).
func (a *app) upstreamOptions(o *account.Options) (func(), error) {
	cfg, err := a.config()
	if err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	dir, err := server.NewDirectory(cfg, slog.New(slog.NewTextHandler(a.stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		return nil, err
	}
	if dir == nil {
		u := cfg.IMAP.Upstream
		o.MailAccounts = u != nil && u.Host != "demo" && u.MasterUser == ""
		for _, m := range []*config.MailUpstream{cfg.POP3.Upstream, cfg.Submission.Upstream} {
			o.MailAccounts = o.MailAccounts || (m != nil && m.Host != "demo")
		}
		return func() {}, nil
	}
	o.Directory = dir
	return func() { dir.Close() }, nil
}

func (a *app) userEnrollCommand() *cobra.Command {
	var label, qrFile string
	var asJSON bool
	c := &cobra.Command{
		Use:   "enroll NAME [--label L] [--json] [--qr FILE.png]",
		Short: "Add an authenticator app; it works once confirmed with a first code",
		Args:  exactArgs("NAME"),
		RunE: func(c *cobra.Command, args []string) error {
			o, err := a.codeOptions()
			if err != nil {
				return err
			}
			closeDir, err := a.upstreamOptions(&o)
			if err != nil {
				return err
			}
			defer closeDir()
			return a.withAccounts(c.Context(), o, func(acc *account.Service) error {
				e, err := acc.Enroll(c.Context(), args[0], label)
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
			o, err := a.codeOptions()
			if err != nil {
				return err
			}
			return a.withAccounts(c.Context(), o, func(acc *account.Service) error {
				res, err := acc.ConfirmAuthenticator(c.Context(), args[0], args[1])
				if err != nil {
					return err
				}
				a.warnAlert(res.AlertErr)
				a.notifyServer(c.Context())
				if res.TwoStep == store.TwoStepPending {
					a.printTwoStep(args[0], res.TwoStep)
					return nil
				}
				fmt.Fprintf(a.stdout, "two-step verification is on for %s (authenticator %q)\n", args[0], res.Label)
				return nil
			})
		},
	}
}

func (a *app) userListCommand() *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "list [--json]",
		Short: "List accounts (never a secret)",
		Args:  noArgs,
		RunE: func(c *cobra.Command, args []string) error {
			return a.withAccounts(c.Context(), account.Options{}, func(acc *account.Service) error {
				out, err := acc.List(c.Context())
				if err != nil {
					return err
				}
				return printList(a.stdout, asJSON, out, "NAME\tTWO-STEP\tAUTHENTICATORS\tKIND\tSOURCE\tGROUPS\tEMAIL", func(u account.Summary) string {
					kind := "person"
					if u.Service {
						kind = "service"
					}
					if u.Disabled {
						kind += " (disabled)"
					}
					return fmt.Sprintf("%s\t%s\t%d\t%s\t%s\t%s\t%s", u.Name, u.TwoStep, u.Authenticators, kind, u.Source, strings.Join(u.Groups, ","), u.Email)
				})
			})
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return c
}

func (a *app) userDisable2SVCommand() *cobra.Command {
	return a.confirmedUserCommand("disable-2sv", "Remove every authenticator of an account and turn two-step off",
		"this removes every authenticator of %s",
		func(ctx context.Context, acc *account.Service, name string) error {
			alertErr, err := acc.DisableTwoStep(ctx, name)
			if err != nil {
				return err
			}
			a.warnAlert(alertErr)
			return nil
		},
		"two-step verification is off for %s; its authenticators are removed and its sessions have ended\n")
}

func (a *app) userDeleteCommand() *cobra.Command {
	return a.confirmedUserCommand("delete", "Delete an account", "this deletes %s for good",
		func(ctx context.Context, acc *account.Service, name string) error { return acc.Delete(ctx, name) },
		"deleted %s\n")
}

// confirmedUserCommand is a command that changes one account for good and
// so wants --yes.
func (a *app) confirmedUserCommand(verb, short, warning string, do func(context.Context, *account.Service, string) error, done string) *cobra.Command {
	var yes bool
	c := &cobra.Command{
		Use:   verb + " NAME --yes",
		Short: short,
		Args:  exactArgs("NAME"),
		RunE: func(c *cobra.Command, args []string) error {
			if !yes {
				return usagef(warning+"; add --yes to do it", args[0])
			}
			return a.withAccounts(c.Context(), account.Options{}, func(acc *account.Service) error {
				if err := do(c.Context(), acc, args[0]); err != nil {
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
