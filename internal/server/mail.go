package server

import (
	"context"
	"net"
	"strconv"

	"github.com/stepgate/stepgate/internal/config"
	"github.com/stepgate/stepgate/internal/listener"
	demomail "github.com/stepgate/stepgate/protocols/imap/demo"
	"github.com/stepgate/stepgate/protocols/pop3"
	pop3demo "github.com/stepgate/stepgate/protocols/pop3/demo"
	"github.com/stepgate/stepgate/protocols/smtp"
	smtpdemo "github.com/stepgate/stepgate/protocols/smtp/demo"
)

// The POP3 and submission front ends, built like IMAP's from their own
// config sections.

// pop3FrontEnd is the POP3 front end with, behind --pop3-upstream demo,
// the in-memory demo mailbox it signs in to.
type pop3FrontEnd struct {
	*pop3.Server
	demo *pop3demo.Server
}

// Probe skips the demo server: it is in this process.
func (f pop3FrontEnd) Probe(ctx context.Context) error {
	if f.demo != nil {
		return nil
	}
	return f.Server.Probe(ctx)
}

func (f pop3FrontEnd) Close() error {
	f.Server.Close()
	if f.demo != nil {
		f.demo.Close()
	}
	return nil
}

func (pop3FrontEnd) Name() string { return "pop3" }

func (f pop3FrontEnd) addrs(a *Addrs) { a.POP3, a.POP3S = f.Addr(), f.POP3SAddr() }

// buildPOP3 builds the POP3 front end from the pop3 section; without a
// mail server named it stays off.
func buildPOP3(d frontEndDeps) (frontEnd, error) {
	c, log := d.core.Config.POP3, d.core.Log
	if !listener.Enabled(c.Listen) && !listener.Enabled(c.POP3SListen) {
		return nil, nil
	}
	if c.Upstream == nil {
		log.Info("POP3 front end off: no mail server named (set pop3.upstream or --pop3-upstream HOST:PORT)")
		return nil, nil
	}
	up := mailUpstream(c.Upstream, c.PreLoginTimeout)
	var demo *pop3demo.Server
	if c.Upstream.Host == "demo" {
		var err error
		if demo, err = pop3demo.Start(log); err != nil {
			return nil, err
		}
		up = pop3.Upstream{Addr: demo.Addr(), TLS: "none"}
	}
	srv, err := pop3.New(pop3.Options{Config: POP3Config(c), Upstream: up,
		TLS: d.tls, Verifier: d.core.Verifier, Log: log, PerAddress: d.perAddr})
	if err != nil {
		if demo != nil {
			demo.Close()
		}
		return nil, err
	}
	return pop3FrontEnd{Server: srv, demo: demo}, nil
}

// POP3Config is the pop3 section as protocols/pop3 takes it.
func POP3Config(c config.POP3) pop3.Config {
	trusted, _ := config.Prefixes(c.TrustedNetworks)
	return pop3.Config{Listen: c.Listen, POP3SListen: c.POP3SListen, AllowPlainRemote: c.AllowPlainRemote,
		PreLoginTimeout: c.PreLoginTimeout.D(), MaxConns: c.MaxConns, LoginFormat: c.LoginFormat,
		TrustedNetworks: trusted}
}

func mailUpstream(u *config.MailUpstream, timeout config.Duration) pop3.Upstream {
	return pop3.Upstream{Addr: net.JoinHostPort(u.Host, strconv.Itoa(u.Port)), TLS: u.TLS, CAFile: u.CAFile,
		Timeout: timeout.D() / 4}
}

// submissionFrontEnd is the submission front end with, behind
// --submission-upstream demo, the in-memory sink it signs in to.
type submissionFrontEnd struct {
	*smtp.Server
	demo *smtpdemo.Server
}

// Probe skips the demo server: it is in this process.
func (f submissionFrontEnd) Probe(ctx context.Context) error {
	if f.demo != nil {
		return nil
	}
	return f.Server.Probe(ctx)
}

func (f submissionFrontEnd) Close() error {
	f.Server.Close()
	if f.demo != nil {
		f.demo.Close()
	}
	return nil
}

func (submissionFrontEnd) Name() string { return "submission" }

func (f submissionFrontEnd) addrs(a *Addrs) {
	a.Submission, a.Submissions = f.Addr(), f.SubmissionsAddr()
}

// buildSubmission builds the SMTP submission front end from the
// submission section; without a mail server named it stays off.
func buildSubmission(d frontEndDeps) (frontEnd, error) {
	c, log := d.core.Config.Submission, d.core.Log
	if !listener.Enabled(c.Listen) && !listener.Enabled(c.SubmissionsListen) {
		return nil, nil
	}
	if c.Upstream == nil {
		log.Info("submission front end off: no mail server named (set submission.upstream or --submission-upstream HOST:PORT)")
		return nil, nil
	}
	up := mailUpstream(c.Upstream, c.PreLoginTimeout)
	var demo *smtpdemo.Server
	if c.Upstream.Host == "demo" {
		var err error
		if demo, err = smtpdemo.Start(log); err != nil {
			return nil, err
		}
		up = smtp.Upstream{Addr: demo.Addr(), TLS: "none"}
	}
	srv, err := smtp.New(smtp.Options{Config: SubmissionConfig(c), Upstream: up,
		TLS: d.tls, Verifier: d.core.Verifier, Log: log, PerAddress: d.perAddr})
	if err != nil {
		if demo != nil {
			demo.Close()
		}
		return nil, err
	}
	return submissionFrontEnd{Server: srv, demo: demo}, nil
}

// SubmissionConfig is the submission section as protocols/smtp takes it.
func SubmissionConfig(c config.Submission) smtp.Config {
	trusted, _ := config.Prefixes(c.TrustedNetworks)
	return smtp.Config{Listen: c.Listen, SubmissionsListen: c.SubmissionsListen, AllowPlainRemote: c.AllowPlainRemote,
		PreLoginTimeout: c.PreLoginTimeout.D(), MaxConns: c.MaxConns, LoginFormat: c.LoginFormat,
		TrustedNetworks: trusted}
}

// demoMailboxes are the in-memory mail servers of this run (IMAP, POP3,
// submission), for the demo account to be added to each.
func (fes frontEnds) demoMailboxes() (imapDemo *demomail.Server, pop3Demo *pop3demo.Server, smtpDemo *smtpdemo.Server) {
	for _, fe := range fes {
		switch f := fe.(type) {
		case imapFrontEnd:
			imapDemo = f.demo
		case pop3FrontEnd:
			pop3Demo = f.demo
		case submissionFrontEnd:
			smtpDemo = f.demo
		}
	}
	return
}
