package server

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/stepgate/stepgate/internal/account"
	"github.com/stepgate/stepgate/internal/config"
	"github.com/stepgate/stepgate/internal/delivery"
	"github.com/stepgate/stepgate/internal/listener"
	"github.com/stepgate/stepgate/internal/relay"
	"github.com/stepgate/stepgate/internal/verifier"
	"github.com/stepgate/stepgate/protocols/portal"
)

type portalFrontEnd struct{ *portal.Server }

func (portalFrontEnd) Name() string { return "portal" }

func (f portalFrontEnd) addrs(a *Addrs) { a.Portal = f.URL() }

// buildPortal builds the self-service portal from the portal section. It
// is built after the protocol front ends: it checks passwords where
// portal.password says (an LDAP bind or IMAP login through those front
// ends' upstreams) and names their addresses in its how-to.
func buildPortal(d frontEndDeps) (frontEnd, error) {
	core := d.core
	c := core.Config.Portal
	if !listener.Enabled(c.Listen) {
		return nil, nil
	}
	trusted, _ := config.Prefixes(c.TrustedProxies) // checked by config.Validate
	servers := portal.Servers{LDAP: c.Servers.LDAP, IMAP: c.Servers.IMAP, POP3: c.Servers.POP3, SMTP: c.Servers.SMTP,
		BaseDN: core.Config.LDAP.BaseDN}
	first := func(vs ...string) string {
		for _, v := range vs {
			if v != "" {
				return v
			}
		}
		return ""
	}
	a := d.addrs
	servers.LDAP = first(servers.LDAP, a.LDAPS, a.LDAP)
	servers.IMAP = first(servers.IMAP, a.IMAPS, a.IMAP)
	servers.POP3 = first(servers.POP3, a.POP3S, a.POP3)
	servers.SMTP = first(servers.SMTP, a.Submissions, a.Submission)
	check, err := portalPassword(c.Password, core.Config.IMAP.LoginFormat, *d.built)
	if err != nil {
		return nil, err
	}
	cfg := core.Config
	ao := account.Options{
		TOTP:   verifier.TOTP{Digits: cfg.TwoStep.Digits, Period: cfg.TwoStep.Period.D(), Skew: cfg.TwoStep.Skew},
		Issuer: cfg.TwoStep.Issuer,
		Delivery: func() (*delivery.Delivery, func(), error) {
			return core.Delivery, func() {}, nil
		},
	}
	// A person known only upstream gets a row when they first sign in
	// to set two-step up, as `user enroll` makes it.
	if core.Directory != nil {
		ao.Directory = core.Directory
	} else {
		ao.MailAccounts = c.Password == "imap"
	}
	acc := account.New(core.Store, ao)
	srv, err := portal.New(portal.Options{
		Config:   portal.Config{Listen: c.Listen, TrustedProxies: trusted, Servers: servers},
		TLS:      d.tls,
		Verifier: core.Verifier, Store: core.Store, Accounts: acc, History: core.History,
		Password: check, AppProtocols: appProtocols(core.Config, *d.built),
		Audit: core.Audit, Log: core.Log.With("service", "portal"),
	})
	if err != nil {
		return nil, err
	}
	return portalFrontEnd{srv}, nil
}

// portalPassword is the portal's password check for portal.password
// (resolved by config.Validate): nil for the local hash.
func portalPassword(mode, format string, fes frontEnds) (portal.PasswordCheck, error) {
	if mode == "local" {
		return nil, nil
	}
	for _, fe := range fes {
		switch f := fe.(type) {
		case ldapFrontEnd:
			if mode == "ldap" {
				return func(_ context.Context, a *verifier.Attempt, _ netip.Addr) func() {
					done, _ := f.PortalAttempt(a)
					return done
				}, nil
			}
		case imapFrontEnd:
			if mode == "imap" {
				return func(_ context.Context, a *verifier.Attempt, remote netip.Addr) func() {
					// The login as typed goes to the mail server; the
					// account is the one the IMAP front end would take.
					login := a.User
					a.User = relay.AccountName(format, login)
					a.Password = f.Server.PasswordChecker(login, net.TCPAddrFromAddrPort(netip.AddrPortFrom(remote, 0)))
					return func() {}
				}, nil
			}
		}
	}
	return nil, fmt.Errorf("portal.password: %s needs the %s front end on (its listen address is off)", mode, strings.ToUpper(mode))
}

// appProtocols are the protocols where an app password can sign in in
// this configuration: where stepgate checks the password itself.
func appProtocols(cfg *config.Config, fes frontEnds) []string {
	var out []string
	for _, fe := range fes {
		switch fe.(type) {
		case ldapFrontEnd:
			if cfg.LDAP.Upstream == nil {
				out = append(out, "ldap")
			}
		case imapFrontEnd:
			if u := cfg.IMAP.Upstream; u != nil && u.MasterUser != "" {
				out = append(out, "imap")
			}
		}
	}
	return out
}
