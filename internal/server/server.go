// Package server assembles `stepgate serve`: the store, the session store,
// the verifier, the protocol front ends, the admin endpoint and the
// control socket, and runs them until the context ends.
package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/stepgate/stepgate/internal/account"
	"github.com/stepgate/stepgate/internal/admin"
	"github.com/stepgate/stepgate/internal/audit"
	"github.com/stepgate/stepgate/internal/config"
	"github.com/stepgate/stepgate/internal/datadir"
	"github.com/stepgate/stepgate/internal/delivery"
	"github.com/stepgate/stepgate/internal/directory"
	"github.com/stepgate/stepgate/internal/history"
	"github.com/stepgate/stepgate/internal/metrics"
	"github.com/stepgate/stepgate/internal/session"
	"github.com/stepgate/stepgate/internal/store"
	"github.com/stepgate/stepgate/internal/verifier"
)

// storeProbeInterval is how often a store whose writes failed tries a
// small write, so that /readyz turns ready again soon after space is freed.
const storeProbeInterval = 2 * time.Second

// Options configure Run.
type Options struct {
	Config  *config.Config // validated
	DataDir datadir.Dir
	// Demo creates (or resets) the demo user and prints how to sign in.
	Demo bool
	// Out receives the demo banner and the start-up summary.
	Out io.Writer
	// Log receives operational logs.
	Log *slog.Logger
	// Started, when set, is called once everything listens (tests use it
	// to reach the core and the bound addresses).
	Started func(*Core, Addrs)
}

// Addrs are the addresses the server listens on ("" when off).
type Addrs struct {
	Admin, LDAP, LDAPS, IMAP, IMAPS      string
	POP3, POP3S, Submission, Submissions string
	// Portal is the self-service portal's URL ("" when off).
	Portal string
}

// Core is what the front ends share.
type Core struct {
	Config   *config.Config
	Store    *store.Store
	Sessions *session.Store
	Verifier *verifier.Verifier
	Metrics  *metrics.Metrics
	// Directory is ldap.upstream's directory, nil without one.
	Directory *directory.Directory
	Log       *slog.Logger
	Audit     *slog.Logger
	Delivery  *delivery.Delivery
	// History is each person's security history (the portal's events).
	History *history.Recorder
}

// NewCore opens the data folder and builds the verifier as the config
// says. The CLI's check command uses it too, so that it runs the very
// decision a front end runs. Close the returned closer when done.
func NewCore(ctx context.Context, cfg *config.Config, dir datadir.Dir, log *slog.Logger) (*Core, io.Closer, error) {
	// Operational lines quote client input too (bad requests, errors
	// that name a DN), so they are cut and escaped like audit events.
	logs := audit.NewHandler(log.Handler(), audit.Options{})
	log = slog.New(logs)
	st, err := dir.Open(ctx)
	if err != nil {
		logs.Close()
		return nil, nil, err
	}
	closers := closerList{logs, st}
	auditLog, auditCloser, err := openAudit(cfg.Audit.File)
	if err != nil {
		closers.Close()
		return nil, nil, err
	}
	closers = append(closers, auditCloser)
	sessions, err := session.New(session.Config{
		HashKey:  st.Sealer().Derive("session"),
		Idle:     cfg.Sessions.Idle.D(),
		Absolute: cfg.Sessions.Absolute.D(),
		Limits: session.Limits{
			MaxFailures: cfg.Lockout.MaxFailures, Window: cfg.Lockout.Window.D(),
			Lockout: cfg.Lockout.Duration.D(), MaxLockout: cfg.Lockout.MaxDuration.D(),
		},
		// Sessions and the lockout log live in the store: they survive a
		// crash, and every instance on the same store shares them.
		Durable: st,
	})
	if err != nil {
		closers.Close()
		return nil, nil, err
	}
	m := metrics.New(sessions.Live)
	// The security history is written off the answer's path; closed
	// before the store, after the verifier's last decision.
	hist := history.New(st, log)
	closers = append(closers, hist)
	apps, err := config.Prefixes(cfg.Lockout.Applications)
	if err != nil {
		closers.Close()
		return nil, nil, fmt.Errorf("lockout.applications: %w", err)
	}
	vc := verifier.Config{
		Store: st, Sessions: sessions, Rule: cfg.Rule(),
		TOTP:   verifier.TOTP{Digits: cfg.TwoStep.Digits, Period: cfg.TwoStep.Period.D(), Skew: cfg.TwoStep.Skew},
		Policy: verifier.Policy(cfg.TwoStep.Policy), Audit: auditLog, Observer: history.Observers{m, hist},
		Hashes: hashLimiter(cfg.Limits, log), Applications: apps, AppPasswordKey: account.AppPasswordKey(st),
	}
	if err := twoStepRules(cfg, &vc); err != nil {
		closers.Close()
		return nil, nil, err
	}
	upstreamDir, err := NewDirectory(cfg, log)
	if err != nil {
		closers.Close()
		return nil, nil, err
	}
	if upstreamDir != nil {
		vc.Directory = upstreamDir
		closers = append(closers, upstreamDir)
	}
	// Sent codes, recovery codes and alerts; closed before the store so
	// that queued alerts can still read addresses.
	d, err := delivery.New(st, sessions, cfg.Delivery, delivery.Options{Rule: cfg.Rule(), Service: cfg.TwoStep.Issuer, Log: log})
	if err != nil {
		closers.Close()
		return nil, nil, err
	}
	closers = append(closers, d)
	d.Configure(&vc)
	v, err := verifier.New(vc)
	if err != nil {
		closers.Close()
		return nil, nil, err
	}
	if _, err := v.Refresh(ctx); err != nil {
		closers.Close()
		return nil, nil, err
	}
	return &Core{Config: cfg, Store: st, Sessions: sessions, Verifier: v, Metrics: m, Directory: upstreamDir, Log: log, Audit: auditLog, Delivery: d,
		History: hist}, closers, nil
}

// openAudit returns the audit logger: JSON events to standard error or
// appended to a file only the owner can read, with client-chosen strings
// cut and escaped and repeated refusals summarised (internal/audit).
// Closing it writes the last summaries, then closes the file.
func openAudit(file string) (*slog.Logger, io.Closer, error) {
	w, closers := io.Writer(os.Stderr), closerList{}
	if file != "-" {
		f, err := os.OpenFile(file, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			return nil, nil, fmt.Errorf("audit.file %s: %w", file, err)
		}
		w, closers = f, closerList{f}
	}
	h := audit.NewHandler(slog.NewJSONHandler(w, nil), audit.Options{})
	return slog.New(h).With("log", "audit"), append(closers, h), nil
}

type closerList []io.Closer

func (cs closerList) Close() error {
	var errs []error
	for i := len(cs) - 1; i >= 0; i-- {
		errs = append(errs, cs[i].Close())
	}
	return errors.Join(errs...)
}

// Run serves until ctx ends, then shuts down gracefully.
func Run(ctx context.Context, opts Options) error {
	if opts.Out == nil {
		opts.Out = io.Discard
	}
	core, closer, err := NewCore(ctx, opts.Config, opts.DataDir, opts.Log)
	if err != nil {
		return err
	}
	defer closer.Close()
	if err := restoreSessions(ctx, core, opts.DataDir.Snapshot()); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := startHousekeeping(core)
	defer close(stop)
	svc := &services{cancel: cancel, errc: make(chan error, 1)}

	ctl, err := svc.serveControl(core, opts.DataDir.Socket())
	if err != nil {
		return err
	}
	defer os.Remove(opts.DataDir.Socket())
	var addrs Addrs
	fes, err := startFrontEnds(core, &addrs)
	if err != nil {
		ctl.Close()
		return err
	}
	if err := svc.serveAdmin(core, fes, &addrs); err != nil {
		ctl.Close()
		fes.Close()
		return err
	}
	for _, fe := range fes {
		svc.serve(fe.Name(), func() error { return fe.Serve(ctx) })
	}

	if opts.Demo {
		if err := demo(ctx, core, opts.Out, addrs, fes, opts.DataDir.Path); err != nil {
			cancel()
			svc.wg.Wait()
			return err
		}
	}
	if opts.Started != nil {
		opts.Started(core, addrs)
	}
	<-ctx.Done()
	return svc.shutdown(core, fes, opts.DataDir.Snapshot())
}

// refreshEvery is how often the store's change log is polled: a revoke or
// a security change made on another instance (or by the CLI) closes the
// sessions and connections here within this, plus one small read.
const refreshEvery = 250 * time.Millisecond

// startHousekeeping runs the background loops until the returned channel
// is closed: idle sessions swept, sessions' last use written, accounts
// and sessions refreshed from the store, and a store whose writes failed
// probed, so that /readyz turns ready again.
func startHousekeeping(core *Core) chan<- struct{} {
	stop := make(chan struct{})
	go every(time.Minute, stop, func() { core.Sessions.Sweep() })
	go every(session.TouchEvery, stop, func() {
		ctx, cancel := context.WithTimeout(context.Background(), session.TouchEvery)
		defer cancel()
		if err := core.Sessions.FlushUse(ctx); err != nil {
			core.Log.Error("writing sessions' last use", "err", err)
		}
	})
	go every(refreshEvery, stop, func() {
		if _, err := core.Verifier.Refresh(context.Background()); err != nil {
			core.Log.Error("refreshing accounts", "err", err)
		}
	})
	probe := core.Store.HealthProbe(core.Log)
	go every(storeProbeInterval, stop, func() {
		ctx, cancel := context.WithTimeout(context.Background(), storeProbeInterval)
		defer cancel()
		probe(ctx)
	})
	return stop
}

// every calls fn every interval until stop is closed.
func every(interval time.Duration, stop <-chan struct{}, fn func()) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			fn()
		}
	}
}

// services are the serving goroutines of one run; the first to fail ends
// the run, and its error is Run's.
type services struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	errc   chan error
	http   []*http.Server
}

func (s *services) serve(name string, fn func() error) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := fn(); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
			select {
			case s.errc <- fmt.Errorf("%s: %w", name, err):
			default: // a later failure, most likely of the shutdown the first began
			}
			s.cancel()
		}
	}()
}

func (s *services) serveHTTP(name string, srv *http.Server, l net.Listener) {
	s.http = append(s.http, srv)
	s.serve(name, func() error { return srv.Serve(l) })
}

// serveControl serves the control socket, where the CLI's session
// commands find the server.
func (s *services) serveControl(core *Core, socket string) (net.Listener, error) {
	l, err := admin.ListenControl(socket)
	if err != nil {
		return nil, err
	}
	s.serveHTTP("control socket", admin.NewHTTPServer((&admin.Control{Store: core.Store, Verifier: core.Verifier, Log: core.Log}).Handler()), l)
	return l, nil
}

// serveAdmin serves /healthz, /readyz and /metrics, unless admin.listen
// is off.
func (s *services) serveAdmin(core *Core, fes frontEnds, addrs *Addrs) error {
	listen := core.Config.Admin.Listen
	if listen == "off" {
		return nil
	}
	l, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("admin.listen %s: %w", listen, err)
	}
	addrs.Admin = l.Addr().String()
	ready := func(ctx context.Context) error {
		// A store that cannot record a used code answers every first
		// sign-in with unavailable: a load balancer should look elsewhere.
		if err := core.Store.Healthy(); err != nil {
			return err
		}
		return fes.ready(ctx)
	}
	s.serveHTTP("admin endpoint", admin.NewHTTPServer(admin.Endpoint(core.Metrics.Handler(), ready)), l)
	core.Log.Info("listening", "service", "admin", "addr", addrs.Admin, "paths", "/healthz /readyz /metrics")
	return nil
}

// shutdown stops the HTTP servers, waits for every service (the front
// ends stop with the run's context), closes the front ends, writes the
// sessions' last use and saves the sent codes for the next run.
func (s *services) shutdown(core *Core, fes frontEnds, snapshot string) error {
	core.Log.Info("shutting down")
	ctx, done := context.WithTimeout(context.Background(), 10*time.Second)
	defer done()
	for _, h := range s.http {
		h.Shutdown(ctx)
	}
	s.wg.Wait()
	fes.Close()
	if err := core.Sessions.FlushUse(ctx); err != nil {
		core.Log.Error("sessions' last use not written", "err", err)
	}
	if err := saveSessions(core, snapshot); err != nil {
		core.Log.Error("sent codes not saved for the next run", "err", err)
	}
	select {
	case err := <-s.errc:
		return err
	default:
		return nil
	}
}
