package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"

	"github.com/stepgate/stepgate/internal/config"
	"github.com/stepgate/stepgate/protocols/imap"
	demomail "github.com/stepgate/stepgate/protocols/imap/demo"
	"github.com/stepgate/stepgate/protocols/ldap"
)

// frontEnds are the protocol listeners of one run.
type frontEnds struct {
	servers map[string]frontEnd
	// ready probes what the front ends depend on (/readyz).
	ready func(context.Context) error
	// demoMail is the in-memory mail server behind --imap-upstream demo.
	demoMail *demomail.Server
}

// startFrontEnds opens the protocol listeners the config asks for and
// fills in their addresses.
func startFrontEnds(ctx context.Context, core *Core, opts Options, addrs *Addrs) (*frontEnds, error) {
	cfg := core.Config
	fe := &frontEnds{servers: map[string]frontEnd{}}
	var probes []func(context.Context) error
	fe.ready = func(ctx context.Context) error {
		for _, p := range probes {
			if err := p(ctx); err != nil {
				return err
			}
		}
		return nil
	}
	var opened []interface{ Close() error }
	fail := func(err error) (*frontEnds, error) {
		for _, o := range opened {
			o.Close()
		}
		return nil, err
	}
	tlsCfg, err := serverTLS(cfg.TLS)
	if err != nil {
		return fail(err)
	}
	perAddr, err := addrLimits(cfg.Limits)
	if err != nil {
		return fail(err)
	}
	if on(cfg.LDAP.Listen) || on(cfg.LDAP.LDAPSListen) {
		srv, err := ldap.New(ldap.Options{Config: LDAPConfig(cfg.LDAP), TLS: tlsCfg, Verifier: core.Verifier, Store: core.Store, Log: core.Log, PerAddress: perAddr})
		if err != nil {
			return fail(err)
		}
		if err := srv.Listen(); err != nil {
			return fail(err)
		}
		opened = append(opened, srv)
		addrs.LDAP, addrs.LDAPS = srv.Addr(), srv.LDAPSAddr()
		fe.servers["ldap"] = srv
		probes = append(probes, srv.Probe) // the upstream directory, in proxy mode
	}
	if on(cfg.IMAP.Listen) || on(cfg.IMAP.IMAPSListen) {
		u := cfg.IMAP.Upstream
		if u == nil {
			core.Log.Info("IMAP front end off: no mail server named (set imap.upstream, --imap-upstream HOST:PORT, or --imap-upstream demo)")
			return fe, nil
		}
		up := imap.Upstream{Addr: net.JoinHostPort(u.Host, strconv.Itoa(u.Port)), TLS: u.TLS, CAFile: u.CAFile,
			MasterUser: u.MasterUser, Timeout: cfg.IMAP.PreLoginTimeout.D() / 4}
		if u.Host == "demo" {
			fe.demoMail, err = demomail.Start(core.Log)
			if err != nil {
				return fail(err)
			}
			opened = append(opened, fe.demoMail)
			up = imap.Upstream{Addr: fe.demoMail.Addr(), TLS: "none"}
		}
		if u.MasterUser != "" {
			b, err := os.ReadFile(u.MasterPasswordFile)
			if err != nil {
				return fail(fmt.Errorf("imap.upstream.master_password_file: %w", err))
			}
			up.MasterPassword = strings.TrimRight(string(b), "\r\n")
			if up.MasterPassword == "" {
				return fail(errors.New("imap.upstream.master_password_file: the file is empty"))
			}
		}
		srv, err := imap.New(imap.Options{Config: IMAPConfig(cfg.IMAP), Upstream: up, TLS: tlsCfg, Verifier: core.Verifier, Log: core.Log, PerAddress: perAddr})
		if err != nil {
			return fail(err)
		}
		if err := srv.Listen(); err != nil {
			return fail(err)
		}
		opened = append(opened, srv)
		addrs.IMAP, addrs.IMAPS = srv.Addr(), srv.IMAPSAddr()
		fe.servers["imap"] = srv
		if fe.demoMail == nil {
			probes = append(probes, srv.Probe)
		}
	}
	return fe, nil
}

func on(listen string) bool { return listen != "" && listen != "off" }

// LDAPConfig is the ldap section as protocols/ldap takes it (the bench
// builds its front end with it, as serve would).
func LDAPConfig(c config.LDAP) ldap.Config {
	lc := ldap.Config{Listen: c.Listen, LDAPSListen: c.LDAPSListen, BaseDN: c.BaseDN,
		AllowPlainRemote: c.AllowPlainRemote, AnonymousSearch: c.AnonymousSearch,
		ReadTimeout: c.ReadTimeout.D(), IdleTimeout: c.IdleTimeout.D(),
		MaxMessageBytes: int(c.MaxMessageBytes), MaxConns: c.MaxConns}
	if u := c.Upstream; u != nil {
		lc.Upstream = &ldap.Upstream{URLs: u.URLs, StartTLS: u.StartTLS, CAFile: u.CAFile,
			PassthroughDNs: u.PassthroughDNs, UserAttribute: u.UserAttribute, Timeout: u.Timeout.D()}
	}
	return lc
}

// IMAPConfig is the imap section as protocols/imap takes it (the
// upstream apart: see startFrontEnds).
func IMAPConfig(c config.IMAP) imap.Config {
	return imap.Config{Listen: c.Listen, IMAPSListen: c.IMAPSListen, AllowPlainRemote: c.AllowPlainRemote,
		PreLoginTimeout: c.PreLoginTimeout.D(), MaxConns: c.MaxConns, LoginFormat: c.LoginFormat}
}
