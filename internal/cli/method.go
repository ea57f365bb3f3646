package cli

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/stepgate/stepgate/internal/account"
	"github.com/stepgate/stepgate/internal/config"
	"github.com/stepgate/stepgate/internal/delivery"
	"github.com/stepgate/stepgate/internal/notify"
	"github.com/stepgate/stepgate/internal/store"
)

// newDelivery builds the delivery of codes over an open store as the
// configuration says, without a session store: the command line sends
// confirmation codes and alerts, never sign-in codes. Close it when done.
func (a *app) newDelivery(st *store.Store) (*delivery.Delivery, *config.Config, error) {
	cfg, err := a.config()
	if err != nil {
		return nil, nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, nil, err
	}
	// Warnings (a failed delivery attempt) go to standard error as text.
	log := slog.New(slog.NewTextHandler(a.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	d, err := delivery.New(st, nil, cfg.Delivery, delivery.Options{Rule: cfg.Rule(), Service: cfg.TwoStep.Issuer, Log: log})
	if err != nil {
		return nil, nil, err
	}
	return d, cfg, nil
}

// deliveryFor builds the delivery of codes over st when an account action
// asks for it; loaded, when not nil, is set to the configuration it was
// built from.
func (a *app) deliveryFor(st *store.Store, loaded **config.Config) func() (*delivery.Delivery, func(), error) {
	return func() (*delivery.Delivery, func(), error) {
		d, cfg, err := a.newDelivery(st)
		if err != nil {
			return nil, nil, err
		}
		if loaded != nil {
			*loaded = cfg
		}
		return d, func() { d.Close() }, nil
	}
}

func (a *app) userMethodCommand() *cobra.Command {
	return group("method", "Manage the e-mail addresses and phones that sign-in codes are sent to",
		a.methodAddCommand(), a.methodConfirmCommand(), a.methodListCommand(), a.methodRemoveCommand(), a.methodPrimaryCommand())
}

func (a *app) methodAddCommand() *cobra.Command {
	var email, phone string
	c := &cobra.Command{
		Use:   "add NAME (--email E | --phone P)",
		Short: "Add an e-mail address or a phone; a code is sent to it to confirm it",
		Args:  exactArgs("NAME"),
		RunE: func(c *cobra.Command, args []string) error {
			if (email == "") == (phone == "") {
				return usagef("give exactly one of --email and --phone")
			}
			kind, addr := store.MethodEmail, email
			if phone != "" {
				kind, addr = store.MethodSMS, phone
			}
			return a.withAccounts(c.Context(), account.Options{}, func(acc *account.Service) error {
				m, err := acc.AddMethod(c.Context(), args[0], kind, addr)
				if err != nil {
					return invalidUsage(err)
				}
				fmt.Fprintf(a.stdout, "confirmation code sent to %s (method %d, valid until %s)\nrun: stepgate user method confirm %s CODE\n",
					notify.Mask(m.Kind, m.Address), m.ID, m.CodeExpires.Local().Format(time.Kitchen), args[0])
				return nil
			})
		},
	}
	c.Flags().StringVar(&email, "email", "", "an e-mail address")
	c.Flags().StringVar(&phone, "phone", "", "a phone number in international form (+CC...)")
	return c
}

func (a *app) methodConfirmCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "confirm NAME CODE",
		Short: "Confirm a new method with the code sent to it; two-step turns on",
		Args:  exactArgs("NAME", "CODE"),
		RunE: func(c *cobra.Command, args []string) error {
			return a.withAccounts(c.Context(), account.Options{}, func(acc *account.Service) error {
				res, err := acc.ConfirmMethod(c.Context(), args[0], args[1])
				if err != nil {
					return err
				}
				a.notifyServer(c.Context())
				m := res.Method
				fmt.Fprintf(a.stdout, "method %d (%s %s) is verified\n", m.ID, m.Kind, notify.Mask(m.Kind, m.Address))
				a.printTwoStep(args[0], res.TwoStep)
				a.warnAlert(res.AlertErr)
				return nil
			})
		},
	}
}

// printTwoStep says what the account's two-step state means.
func (a *app) printTwoStep(user string, state store.TwoStep) {
	switch state {
	case store.TwoStepActive:
		fmt.Fprintf(a.stdout, "two-step verification is on for %s\n", user)
	case store.TwoStepPending:
		fmt.Fprintf(a.stdout, "two-step verification for %s is not complete: delivery.require_backup_method wants a second way to get a code\n"+
			"(stepgate user method add %s --phone P | --email E, or another authenticator)\n", user, user)
	}
}

func (a *app) methodListCommand() *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "list NAME [--json]",
		Short: "List an account's methods",
		Args:  exactArgs("NAME"),
		RunE: func(c *cobra.Command, args []string) error {
			return a.withAccounts(c.Context(), account.Options{}, func(acc *account.Service) error {
				out, err := acc.Methods(c.Context(), args[0])
				if err != nil {
					return err
				}
				return printList(a.stdout, asJSON, out, "ID\tKIND\tADDRESS\tSTATE", func(m account.MethodSummary) string {
					state := "unverified"
					if m.Verified {
						state = "verified"
					}
					if m.Primary {
						state += ", primary"
					}
					return fmt.Sprintf("%d\t%s\t%s\t%s", m.ID, m.Kind, m.Address, state)
				})
			})
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return c
}

func methodID(s string) (int64, error) {
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || id < 1 {
		return 0, usagef("method ID %q is not a number (see stepgate user method list)", s)
	}
	return id, nil
}

func (a *app) methodRemoveCommand() *cobra.Command {
	var yes bool
	c := &cobra.Command{
		Use:   "remove NAME ID --yes",
		Short: "Remove a method",
		Args:  exactArgs("NAME", "ID"),
		RunE: func(c *cobra.Command, args []string) error {
			id, err := methodID(args[1])
			if err != nil {
				return err
			}
			if !yes {
				return usagef("this removes method %d of %s; add --yes to do it", id, args[0])
			}
			return a.withAccounts(c.Context(), account.Options{}, func(acc *account.Service) error {
				if err := acc.RemoveMethod(c.Context(), args[0], id); err != nil {
					return err
				}
				fmt.Fprintf(a.stdout, "removed method %d of %s\n", id, args[0])
				return nil
			})
		},
	}
	c.Flags().BoolVar(&yes, "yes", false, "confirm")
	return c
}

func (a *app) methodPrimaryCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "primary NAME ID",
		Short: "Send sign-in codes to this verified method",
		Args:  exactArgs("NAME", "ID"),
		RunE: func(c *cobra.Command, args []string) error {
			id, err := methodID(args[1])
			if err != nil {
				return err
			}
			return a.withAccounts(c.Context(), account.Options{}, func(acc *account.Service) error {
				if err := acc.SetPrimaryMethod(c.Context(), args[0], id); err != nil {
					return err
				}
				fmt.Fprintf(a.stdout, "sign-in codes for %s now go to method %d\n", args[0], id)
				return nil
			})
		},
	}
}

func (a *app) userRecoveryCodesCommand() *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "recovery-codes NAME [--json]",
		Short: "Make 10 new single-use recovery codes (shown once; the previous ones stop working)",
		Args:  exactArgs("NAME"),
		RunE: func(c *cobra.Command, args []string) error {
			return a.withStore(c.Context(), func(st *store.Store) error {
				// The configuration the codes were made under also says
				// how to type them.
				var cfg *config.Config
				acc := account.New(st, account.Options{Delivery: a.deliveryFor(st, &cfg)})
				codes, err := acc.RecoveryCodes(c.Context(), args[0])
				if err != nil {
					return err
				}
				if asJSON {
					return json.NewEncoder(a.stdout).Encode(map[string]any{"user": args[0], "codes": codes})
				}
				fmt.Fprintf(a.stdout, "Recovery codes for %s (each works once; they are not shown again):\n\n", args[0])
				for _, code := range codes {
					fmt.Fprintf(a.stdout, "    %s\n", code)
				}
				sep := ""
				if cfg.TwoStep.Separator != "" {
					sep = fmt.Sprintf(" after %q", cfg.TwoStep.Separator)
				}
				fmt.Fprintf(a.stdout, "\nUse one where a code is expected: the password, then the recovery code%s.\n", sep)
				return nil
			})
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print one JSON object: user, codes")
	return c
}

// warnAlert says that a security alert did not go out; the change it
// reports was made all the same.
func (a *app) warnAlert(err error) {
	if err != nil {
		fmt.Fprintf(a.stderr, "warning: the security alert was not sent: %v\n", err)
	}
}
