package server

import (
	"net"
	"strconv"

	"github.com/stepgate/stepgate/internal/config"
	"github.com/stepgate/stepgate/internal/listener"
	"github.com/stepgate/stepgate/protocols/pop3"
	"github.com/stepgate/stepgate/protocols/smtp"
)

// The POP3 and submission front ends, built like IMAP's from their own
// config sections.

type pop3FrontEnd struct{ *pop3.Server }

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
	srv, err := pop3.New(pop3.Options{Config: POP3Config(c), Upstream: mailUpstream(c.Upstream, c.PreLoginTimeout),
		TLS: d.tls, Verifier: d.core.Verifier, Log: log, PerAddress: d.perAddr})
	if err != nil {
		return nil, err
	}
	return pop3FrontEnd{srv}, nil
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

type submissionFrontEnd struct{ *smtp.Server }

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
	srv, err := smtp.New(smtp.Options{Config: SubmissionConfig(c), Upstream: mailUpstream(c.Upstream, c.PreLoginTimeout),
		TLS: d.tls, Verifier: d.core.Verifier, Log: log, PerAddress: d.perAddr})
	if err != nil {
		return nil, err
	}
	return submissionFrontEnd{srv}, nil
}

// SubmissionConfig is the submission section as protocols/smtp takes it.
func SubmissionConfig(c config.Submission) smtp.Config {
	trusted, _ := config.Prefixes(c.TrustedNetworks)
	return smtp.Config{Listen: c.Listen, SubmissionsListen: c.SubmissionsListen, AllowPlainRemote: c.AllowPlainRemote,
		PreLoginTimeout: c.PreLoginTimeout.D(), MaxConns: c.MaxConns, LoginFormat: c.LoginFormat,
		TrustedNetworks: trusted}
}
