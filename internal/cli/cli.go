// Package cli is the stepgate command line: serve, user, check, session
// and version, on spf13/cobra.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/stepgate/stepgate/internal/admin"
	"github.com/stepgate/stepgate/internal/config"
	"github.com/stepgate/stepgate/internal/datadir"
)

// Exit codes.
const (
	ExitOK      = 0
	ExitFailure = 1
	ExitUsage   = 2
)

// Version is set at build time (-ldflags "-X .../cli.Version=v1.2.3").
var Version = "dev"

// usageError is a bad command line: usage is printed and the exit code is 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// exitError carries a specific exit code without a message of its own
// (check's deny, say).
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit %d", e.code) }

// app holds what every command shares.
type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	dataDir        string
	configFile     string
}

func (a *app) dir() datadir.Dir { return datadir.New(a.dataDir) }

// storeDir is the data folder with the store that cfg names: the folder's
// SQLite file, or a PostgreSQL database shared with other instances.
func (a *app) storeDir(cfg *config.Config) datadir.Dir {
	d := a.dir()
	if cfg.Store.Driver == "postgres" {
		d.DSN, d.PasswordFile = cfg.Store.DSN, cfg.Store.PasswordFile
	}
	return d
}

func (a *app) config() (*config.Config, error) {
	c, err := config.Load(a.configFile)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// notifyServer asks a running server to notice an account change now; it
// would within a second anyway, so a server that is not running is fine.
func (a *app) notifyServer(ctx context.Context) {
	err := admin.NewClient(a.dir().Socket()).Refresh(ctx)
	if err != nil && !errors.Is(err, admin.ErrNotRunning) {
		fmt.Fprintf(a.stderr, "warning: the running server was not told of the change (it will notice within a second): %v\n", err)
	}
}

// Main runs the command line and returns the exit code.
func Main(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	a := &app{stdin: stdin, stdout: stdout, stderr: stderr}
	root := a.rootCommand()
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return ExitOK
	}
	var ee exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	var ue usageError
	if errors.As(err, &ue) || isCobraUsage(err) {
		fmt.Fprintf(stderr, "stepgate: %v\n\n", err)
		if cmd == nil {
			cmd = root
		}
		fmt.Fprint(stderr, cmd.UsageString())
		return ExitUsage
	}
	fmt.Fprintf(stderr, "stepgate: %v\n", err)
	return ExitFailure
}

// isCobraUsage recognises cobra's own complaints about the command line,
// which it does not type.
func isCobraUsage(err error) bool {
	msg := err.Error()
	for _, p := range []string{"unknown command", "unknown flag", "unknown shorthand flag", "flag needs an argument",
		"invalid argument", "accepts ", "requires at least", "requires at most", "if any flags in the group"} {
		if strings.Contains(msg, p) {
			return true
		}
	}
	return false
}

func (a *app) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "stepgate",
		Short: "Two-step verification for clients that can only send a password",
		Long: `stepgate puts two-step verification in front of LDAP and IMAP clients that
only have a password field: the user appends the current code to the
password, stepgate checks both and remembers the sign-in for a while.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          noArgs,
		RunE: func(c *cobra.Command, args []string) error {
			return usagef("no command given")
		},
	}
	defDir := os.Getenv("STEPGATE_DATA_DIR")
	if defDir == "" {
		defDir = "./stepgate-data"
	}
	root.PersistentFlags().StringVar(&a.dataDir, "data-dir", defDir, "data folder: database, sealing key, control socket (env STEPGATE_DATA_DIR)")
	root.PersistentFlags().StringVar(&a.configFile, "config", os.Getenv("STEPGATE_CONFIG"), "YAML configuration file (env STEPGATE_CONFIG)")
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return usageError{err} })
	root.CompletionOptions.DisableDefaultCmd = true
	root.AddCommand(a.serveCommand(), a.userCommand(), a.checkCommand(), a.sessionCommand(), a.versionCommand())
	return root
}

// group returns a command that only holds subcommands.
func group(use, short string, subs ...*cobra.Command) *cobra.Command {
	c := &cobra.Command{
		Use: use, Short: short, Args: cobra.ArbitraryArgs,
		RunE: func(c *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usagef("%s needs a subcommand", c.CommandPath())
			}
			return usagef("unknown command %q for %s", args[0], c.CommandPath())
		},
	}
	c.AddCommand(subs...)
	return c
}

func noArgs(c *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef("unknown command %q for %s", args[0], c.CommandPath())
	}
	return nil
}

func exactArgs(names ...string) cobra.PositionalArgs {
	return func(c *cobra.Command, args []string) error {
		if len(args) != len(names) {
			return usagef("%s takes %d argument(s): %s (got %d)", c.CommandPath(), len(names), strings.Join(names, " "), len(args))
		}
		return nil
	}
}

func (a *app) versionCommand() *cobra.Command {
	return &cobra.Command{
		Use: "version", Short: "Print the version", Args: noArgs,
		RunE: func(c *cobra.Command, args []string) error {
			v := Version
			if bi, ok := debug.ReadBuildInfo(); ok && v == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
				v = bi.Main.Version
			}
			goVersion := "unknown"
			if bi, ok := debug.ReadBuildInfo(); ok {
				goVersion = bi.GoVersion
			}
			fmt.Fprintf(a.stdout, "stepgate %s (%s)\n", v, goVersion)
			return nil
		},
	}
}

// printList prints rows as indented JSON, or as a table: header, then
// one line per row, columns separated by tabs.
func printList[T any](out io.Writer, asJSON bool, rows []T, header string, line func(T) string) error {
	if asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(rows)
	}
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, header)
	for _, r := range rows {
		fmt.Fprintln(w, line(r))
	}
	return w.Flush()
}
