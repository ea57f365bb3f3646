package cli

import (
	"log/slog"
	"strings"

	"github.com/spf13/cobra"

	"github.com/stepgate/stepgate/internal/config"
	"github.com/stepgate/stepgate/internal/server"
)

func (a *app) serveCommand() *cobra.Command {
	var demo bool
	var ldapListen, ldapsListen, imapListen, imapsListen, imapUpstream, adminListen string
	var pop3Listen, pop3sListen, pop3Upstream, subListen, subsListen, subUpstream string
	var portalListen string
	c := &cobra.Command{
		Use:   "serve [--config FILE] [flags]",
		Short: "Run the LDAP, IMAP, POP3 and SMTP submission front ends, the admin endpoint and the control socket",
		Long: `serve runs stepgate until SIGTERM or SIGINT. Configuration comes from the
YAML file given by --config (every key is checked; an unknown key or a bad
value stops start-up, naming the file, the key and the reason); the flags
below override it.`,
		Args: noArgs,
		RunE: func(c *cobra.Command, args []string) error {
			cfg, err := a.config()
			if err != nil {
				return err
			}
			set := func(flag string, dst *string, v string) {
				if c.Flags().Changed(flag) {
					*dst = v
				}
			}
			set("ldap-listen", &cfg.LDAP.Listen, ldapListen)
			set("ldaps-listen", &cfg.LDAP.LDAPSListen, ldapsListen)
			set("imap-listen", &cfg.IMAP.Listen, imapListen)
			set("imaps-listen", &cfg.IMAP.IMAPSListen, imapsListen)
			set("admin-listen", &cfg.Admin.Listen, adminListen)
			set("pop3-listen", &cfg.POP3.Listen, pop3Listen)
			set("pop3s-listen", &cfg.POP3.POP3SListen, pop3sListen)
			set("submission-listen", &cfg.Submission.Listen, subListen)
			set("submissions-listen", &cfg.Submission.SubmissionsListen, subsListen)
			set("portal-listen", &cfg.Portal.Listen, portalListen)
			for _, u := range []struct {
				flag string
				dst  **config.MailUpstream
				v    string
			}{{"pop3-upstream", &cfg.POP3.Upstream, pop3Upstream}, {"submission-upstream", &cfg.Submission.Upstream, subUpstream}} {
				if c.Flags().Changed(u.flag) {
					if err := config.SetMailUpstream(u.dst, "--"+u.flag, u.v); err != nil {
						return usageError{err}
					}
				}
			}
			if c.Flags().Changed("imap-upstream") {
				if err := cfg.SetIMAPUpstream(imapUpstream); err != nil {
					return usageError{err}
				}
			}
			if err := cfg.Validate(); err != nil {
				return err
			}
			log := newLogger(cfg, a.stderr)
			return server.Run(c.Context(), server.Options{Config: cfg, DataDir: a.storeDir(cfg), Demo: demo, Out: a.stdout, Log: log})
		},
	}
	f := c.Flags()
	f.StringVar(&ldapListen, "ldap-listen", "", "LDAP address (default 127.0.0.1:3389; off disables)")
	f.StringVar(&ldapsListen, "ldaps-listen", "", "LDAPS address (needs tls in the config)")
	f.StringVar(&imapListen, "imap-listen", "", "IMAP address (default 127.0.0.1:1143; off disables)")
	f.StringVar(&imapsListen, "imaps-listen", "", "IMAPS address (needs tls in the config)")
	f.StringVar(&imapUpstream, "imap-upstream", "", "mail server HOST:PORT behind the IMAP front end, or demo")
	f.StringVar(&pop3Listen, "pop3-listen", "", "POP3 address (default 127.0.0.1:1110; off disables)")
	f.StringVar(&pop3sListen, "pop3s-listen", "", "POP3S address (needs tls in the config)")
	f.StringVar(&pop3Upstream, "pop3-upstream", "", "mail server HOST:PORT behind the POP3 front end, or demo")
	f.StringVar(&subListen, "submission-listen", "", "SMTP submission address (default 127.0.0.1:1587; off disables)")
	f.StringVar(&subsListen, "submissions-listen", "", "SMTP submission over implicit TLS (needs tls in the config)")
	f.StringVar(&subUpstream, "submission-upstream", "", "mail server HOST:PORT behind the submission front end, or demo")
	f.StringVar(&adminListen, "admin-listen", "", "admin HTTP address for /healthz and /metrics (default 127.0.0.1:9386; off disables)")
	f.StringVar(&portalListen, "portal-listen", "", "self-service portal address (default 127.0.0.1:9387; off disables)")
	f.BoolVar(&demo, "demo", false, "create (or reset) a demo user and print how to sign in")
	return c
}

func newLogger(cfg *config.Config, w interface{ Write([]byte) (int, error) }) *slog.Logger {
	var level slog.Level
	level.UnmarshalText([]byte(strings.ToUpper(cfg.Log.Level)))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Log.Format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}
