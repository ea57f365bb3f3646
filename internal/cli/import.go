package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/stepgate/stepgate/internal/account"
	"github.com/stepgate/stepgate/internal/account/importfile"
)

// errorsShown is how many bad rows an import that stops prints;
// --dry-run prints them all.
const errorsShown = 10

func (a *app) userImportCommand() *cobra.Command {
	var format, user string
	var dryRun bool
	c := &cobra.Command{
		Use:   "import FILE... [--format csv|json|ldif|google-authenticator] [--user NAME] [--dry-run]",
		Short: "Add accounts with their password hashes and authenticators from other systems, all or none",
		Long: `Add accounts from FILE ("-" is standard input), in one transaction: every
account, or, when any row is bad, none. The format comes from --format or
the file's name (.csv, .json, .ldif, .google_authenticator).

  csv    columns name,password_hash (required), display_name, email, phone,
         totp_secret, groups, recovery_codes, service, disabled
  json   stepgate user export's document, or an array of objects with the
         same fields as csv (authenticators: [{label, secret, last_step}])
  ldif   slapcat's output: entries with uid, cn, mail, userPassword, and
         slapo-otp's oathTOTPToken with its oathSecret and parameters
  google-authenticator
         a ~/.google_authenticator file: its secret and scratch codes go to
         the account named by --user or by the file's folder (/home/NAME),
         which must exist; scratch code 12345678 becomes 0000-1234-5678

Password hashes: {SSHA}, {SSHA256}, {SSHA512}, {CRYPT} with $6$ or $5$, {ARGON2},
bcrypt, argon2id. --dry-run lists every bad row and every account it would
add, and writes nothing.`,
		Args: func(c *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usagef("%s needs a FILE (- for standard input)", c.CommandPath())
			}
			return nil
		},
		RunE: func(c *cobra.Command, args []string) error {
			var f importfile.Format
			if format != "" {
				var err error
				if f, err = importfile.ParseFormat(format); err != nil {
					return usageError{err}
				}
			}
			if user != "" && (len(args) > 1 || (f != "" && f != importfile.GoogleAuthenticator)) {
				return usagef("--user names the owner of one google-authenticator file")
			}
			var accs []importfile.Account
			var bad importfile.Errors
			for _, path := range args {
				ff := f
				if ff == "" {
					var ok bool
					if ff, ok = importfile.Guess(path); !ok {
						return usagef("cannot tell the format of %s from its name: give --format csv, json, ldif or google-authenticator", path)
					}
				}
				data, err := a.readImport(path)
				if err != nil {
					return err
				}
				src := path
				if path == "-" {
					src = "stdin"
				}
				got, err := importfile.Parse(data, ff, importfile.Options{Source: src, User: user})
				var es importfile.Errors
				if errors.As(err, &es) {
					bad = append(bad, es...)
				} else if err != nil {
					return err
				}
				accs = append(accs, got...)
			}
			o, err := a.codeOptions()
			if err != nil {
				return err
			}
			return a.withAccounts(c.Context(), o, func(acc *account.Service) error {
				var plan []account.Planned
				if len(bad) == 0 {
					var err error
					plan, err = acc.Import(c.Context(), accs, dryRun)
					var es importfile.Errors
					if errors.As(err, &es) {
						bad = es
					} else if err != nil {
						return err
					}
				}
				if dryRun {
					for _, p := range plan {
						fmt.Fprintln(a.stdout, plannedLine(p))
					}
				}
				if len(bad) > 0 {
					shown := bad
					if !dryRun && len(shown) > errorsShown {
						shown = shown[:errorsShown]
					}
					for _, e := range shown {
						fmt.Fprintln(a.stderr, e.Error())
					}
					more := ""
					if len(shown) < len(bad) {
						more = fmt.Sprintf(" (%d shown; --dry-run lists them all)", len(shown))
					}
					return fmt.Errorf("%d bad row(s)%s: nothing was imported", len(bad), more)
				}
				if dryRun {
					fmt.Fprintf(a.stdout, "dry run: %s; nothing was written\n", summary(plan))
					return nil
				}
				a.notifyServer(c.Context())
				fmt.Fprintf(a.stdout, "imported %s\n", summary(plan))
				return nil
			})
		},
	}
	c.Flags().StringVar(&format, "format", "", "csv, json, ldif or google-authenticator (default: from the file's name)")
	c.Flags().StringVar(&user, "user", "", "the account a google-authenticator file belongs to (default: the file's folder name)")
	c.Flags().BoolVar(&dryRun, "dry-run", false, "check everything, list every bad row and what would be imported, write nothing")
	return c
}

func (a *app) readImport(path string) ([]byte, error) {
	var r io.Reader = a.stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	data, err := io.ReadAll(io.LimitReader(r, importfile.MaxInput+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	if len(data) > importfile.MaxInput {
		return nil, fmt.Errorf("%s is larger than %d bytes: split it", path, importfile.MaxInput)
	}
	return data, nil
}

func plannedLine(p account.Planned) string {
	where := fmt.Sprintf("%s:%d", p.Source, p.Line)
	if p.Existing {
		return fmt.Sprintf("would add to %s (%s): %d authenticator(s), %d recovery code(s)", p.Name, where, p.Authenticators, p.RecoveryCodes)
	}
	groups := ""
	if len(p.Groups) > 0 {
		groups = ", groups " + strings.Join(p.Groups, ",")
	}
	return fmt.Sprintf("would import %s (%s): password %s, %d authenticator(s), %d recovery code(s)%s",
		p.Name, where, p.Scheme, p.Authenticators, p.RecoveryCodes, groups)
}

func summary(plan []account.Planned) string {
	var added, existing, auths, codes int
	for _, p := range plan {
		if p.Existing {
			existing++
		} else {
			added++
		}
		auths += p.Authenticators
		codes += p.RecoveryCodes
	}
	s := fmt.Sprintf("%d account(s), %d authenticator(s), %d recovery code(s)", added, auths, codes)
	if existing > 0 {
		s += fmt.Sprintf("; added to %d existing account(s)", existing)
	}
	return s
}

func (a *app) userExportCommand() *cobra.Command {
	var format string
	var secrets bool
	c := &cobra.Command{
		Use:   "export --format json [--include-secrets]",
		Short: "Print every account as JSON that user import reads back; secrets only when asked",
		Long: `Print every account as JSON: names, display names, addresses, groups,
flags. --include-secrets adds the password hashes and every authenticator's
secret in clear (base32), so that the document imports to the same
accounts elsewhere; it needs the data folder's sealing key. Recovery codes
are never exported: only their keyed hashes are kept.`,
		Args: noArgs,
		RunE: func(c *cobra.Command, args []string) error {
			if format != "json" {
				return usagef("--format json is the one export format")
			}
			d := a.dir()
			if _, err := os.Stat(d.DB()); err != nil {
				return fmt.Errorf("no account database in %s: %w", d.Path, err)
			}
			if secrets {
				if _, err := os.Stat(d.KeyFile); err != nil {
					return fmt.Errorf("--include-secrets needs the sealing key %s: %w", d.KeyFile, err)
				}
			}
			return a.withAccounts(c.Context(), account.Options{}, func(acc *account.Service) error {
				doc, err := acc.Export(c.Context(), secrets)
				if err != nil {
					return err
				}
				if secrets {
					fmt.Fprintln(a.stderr, "warning: this export holds password hashes and authenticator secrets in clear: anyone with it can make every account's codes; keep it like the sealing key, and delete it once imported")
				}
				enc := json.NewEncoder(a.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(doc)
			})
		},
	}
	c.Flags().StringVar(&format, "format", "json", "json")
	c.Flags().BoolVar(&secrets, "include-secrets", false, "add password hashes and authenticator secrets in clear (base32)")
	return c
}
