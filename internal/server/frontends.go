package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"

	"github.com/stepgate/stepgate/internal/config"
	"github.com/stepgate/stepgate/internal/listener"
	"github.com/stepgate/stepgate/protocols/imap"
	demomail "github.com/stepgate/stepgate/protocols/imap/demo"
	"github.com/stepgate/stepgate/protocols/ldap"
)

// frontEnd is one protocol's listeners, driven alike whatever the
// protocol.
type frontEnd interface {
	// Name names it in errors ("ldap").
	Name() string
	Listen() error
	// Serve accepts connections until ctx ends, then closes them all.
	Serve(ctx context.Context) error
	// Close releases what Listen (or the build) opened; harmless after
	// Serve.
	Close() error
	// Probe checks what it depends on, for /readyz.
	Probe(ctx context.Context) error
	// addrs records where it listens, for the banner and for tests.
	addrs(a *Addrs)
}

// frontEndDeps is what every front end is built from: the core and what
// the front ends share.
type frontEndDeps struct {
	core *Core
	// tls is the certificate the front ends present, or nil.
	tls *tls.Config
	// perAddr counts an address's connections across the front ends.
	perAddr *listener.AddrLimits
	// built and addrs are the front ends built so far and where they
	// listen: the portal, built last, checks passwords with them and
	// names them in its how-to.
	built *frontEnds
	addrs *Addrs
}

// frontEndBuilders build every front end stepgate has, in start order,
// each from its own section of the config; a builder returns nil when
// the config leaves its front end off.
var frontEndBuilders = []func(frontEndDeps) (frontEnd, error){
	buildLDAP,
	buildIMAP,
	buildPOP3,
	buildSubmission,
	buildPortal,
}

// frontEnds are the front ends of one run, listening.
type frontEnds []frontEnd

// startFrontEnds builds the front ends the config asks for and opens
// their listeners; on an error it closes what it opened.
func startFrontEnds(core *Core, addrs *Addrs) (frontEnds, error) {
	tlsCfg, err := serverTLS(core.Config.TLS)
	if err != nil {
		return nil, err
	}
	perAddr, err := addrLimits(core.Config)
	if err != nil {
		return nil, err
	}
	var fes frontEnds
	deps := frontEndDeps{core: core, tls: tlsCfg, perAddr: perAddr, built: &fes, addrs: addrs}
	fail := func(err error) (frontEnds, error) {
		fes.Close()
		return nil, err
	}
	for _, build := range frontEndBuilders {
		fe, err := build(deps)
		if err != nil {
			return fail(err)
		}
		if fe == nil {
			continue // off in this config: the others still start
		}
		if err := fe.Listen(); err != nil {
			fe.Close()
			return fail(err)
		}
		fe.addrs(addrs)
		fes = append(fes, fe)
	}
	return fes, nil
}

// ready probes what every front end depends on.
func (fes frontEnds) ready(ctx context.Context) error {
	for _, fe := range fes {
		if err := fe.Probe(ctx); err != nil {
			return err
		}
	}
	return nil
}

// Close closes every front end.
func (fes frontEnds) Close() error {
	var errs []error
	for _, fe := range fes {
		errs = append(errs, fe.Close())
	}
	return errors.Join(errs...)
}

type ldapFrontEnd struct{ *ldap.Server }

func (ldapFrontEnd) Name() string { return "ldap" }

func (f ldapFrontEnd) addrs(a *Addrs) { a.LDAP, a.LDAPS = f.Addr(), f.LDAPSAddr() }

// buildLDAP builds the LDAP front end from the ldap section.
func buildLDAP(d frontEndDeps) (frontEnd, error) {
	c := d.core.Config.LDAP
	if !listener.Enabled(c.Listen) && !listener.Enabled(c.LDAPSListen) {
		return nil, nil
	}
	srv, err := ldap.New(ldap.Options{Config: LDAPConfig(c), TLS: d.tls, Verifier: d.core.Verifier, Store: d.core.Store,
		Directory: d.core.Directory, Log: d.core.Log, PerAddress: d.perAddr})
	if err != nil {
		return nil, err
	}
	return ldapFrontEnd{srv}, nil
}

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

// imapFrontEnd is the IMAP front end with, behind --imap-upstream demo,
// the in-memory mail server it signs in to.
type imapFrontEnd struct {
	*imap.Server
	demo *demomail.Server
}

func (imapFrontEnd) Name() string { return "imap" }

func (f imapFrontEnd) addrs(a *Addrs) { a.IMAP, a.IMAPS = f.Addr(), f.IMAPSAddr() }

// Probe skips the demo mail server: it is in this process.
func (f imapFrontEnd) Probe(ctx context.Context) error {
	if f.demo != nil {
		return nil
	}
	return f.Server.Probe(ctx)
}

func (f imapFrontEnd) Close() error {
	f.Server.Close()
	if f.demo != nil {
		f.demo.Close()
	}
	return nil
}

// buildIMAP builds the IMAP front end from the imap section; without a
// mail server named it stays off.
func buildIMAP(d frontEndDeps) (frontEnd, error) {
	c, log := d.core.Config.IMAP, d.core.Log
	if !listener.Enabled(c.Listen) && !listener.Enabled(c.IMAPSListen) {
		return nil, nil
	}
	u := c.Upstream
	if u == nil {
		log.Info("IMAP front end off: no mail server named (set imap.upstream, --imap-upstream HOST:PORT, or --imap-upstream demo)")
		return nil, nil
	}
	up := imap.Upstream{Addr: net.JoinHostPort(u.Host, strconv.Itoa(u.Port)), TLS: u.TLS, CAFile: u.CAFile,
		MasterUser: u.MasterUser, Timeout: c.PreLoginTimeout.D() / 4}
	var demo *demomail.Server
	fail := func(err error) (frontEnd, error) {
		if demo != nil {
			demo.Close()
		}
		return nil, err
	}
	if u.Host == "demo" {
		var err error
		if demo, err = demomail.Start(log); err != nil {
			return nil, err
		}
		up = imap.Upstream{Addr: demo.Addr(), TLS: "none"}
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
	srv, err := imap.New(imap.Options{Config: IMAPConfig(c), Upstream: up, TLS: d.tls, Verifier: d.core.Verifier,
		Log: log, PerAddress: d.perAddr})
	if err != nil {
		return fail(err)
	}
	return imapFrontEnd{Server: srv, demo: demo}, nil
}

// IMAPConfig is the imap section as protocols/imap takes it (the
// upstream apart: see buildIMAP).
func IMAPConfig(c config.IMAP) imap.Config {
	// config.Validate has checked the list; unchecked, a bad one trusts
	// no front rather than the wrong one.
	trusted, _ := config.Prefixes(c.TrustedNetworks)
	return imap.Config{Listen: c.Listen, IMAPSListen: c.IMAPSListen, AllowPlainRemote: c.AllowPlainRemote,
		PreLoginTimeout: c.PreLoginTimeout.D(), MaxConns: c.MaxConns, LoginFormat: c.LoginFormat,
		TrustedNetworks: trusted}
}
