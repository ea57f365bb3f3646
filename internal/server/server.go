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

	"github.com/stepgate/stepgate/internal/admin"
	"github.com/stepgate/stepgate/internal/audit"
	"github.com/stepgate/stepgate/internal/config"
	"github.com/stepgate/stepgate/internal/datadir"
	"github.com/stepgate/stepgate/internal/delivery"
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
	Admin, LDAP, LDAPS, IMAP, IMAPS string
}

// frontEnd is a protocol listener.
type frontEnd interface {
	Serve(ctx context.Context) error
}

// Core is what the front ends share.
type Core struct {
	Config   *config.Config
	Store    *store.Store
	Sessions *session.Store
	Verifier *verifier.Verifier
	Metrics  *metrics.Metrics
	Log      *slog.Logger
	Audit    *slog.Logger
	Delivery *delivery.Delivery
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
	})
	if err != nil {
		closers.Close()
		return nil, nil, err
	}
	m := metrics.New(sessions.Live)
	vc := verifier.Config{
		Store: st, Sessions: sessions, Rule: cfg.Rule(),
		TOTP:   verifier.TOTP{Digits: cfg.TwoStep.Digits, Period: cfg.TwoStep.Period.D(), Skew: cfg.TwoStep.Skew},
		Policy: verifier.Policy(cfg.TwoStep.Policy), Audit: auditLog, Observer: m,
		Hashes: hashLimiter(cfg.Limits, log),
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
	return &Core{Config: cfg, Store: st, Sessions: sessions, Verifier: v, Metrics: m, Log: log, Audit: auditLog, Delivery: d}, closers, nil
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
	cfg, log := opts.Config, opts.Log
	if opts.Out == nil {
		opts.Out = io.Discard
	}
	core, closer, err := NewCore(ctx, cfg, opts.DataDir, log)
	if err != nil {
		return err
	}
	defer closer.Close()
	log = core.Log
	if n, err := loadSessions(core, opts.DataDir.Snapshot()); err != nil {
		// Losing sessions costs users a code, not safety: go on.
		log.Warn("sessions from the last run not restored", "err", err)
	} else if n > 0 {
		if _, err := core.Verifier.Reconcile(ctx); err != nil {
			return err
		}
		log.Info("sessions restored from the last run", "count", core.Sessions.Live())
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, 8)
	goServe := func(name string, fn func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fn(); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
				errc <- fmt.Errorf("%s: %w", name, err)
				cancel()
			}
		}()
	}

	stop := make(chan struct{})
	go core.Sessions.RunSweeper(time.Minute, stop)
	go core.Verifier.RunRefresher(time.Second, stop)
	go core.Store.RunHealthProbe(storeProbeInterval, log, stop)
	defer close(stop)

	var addrs Addrs
	var httpServers []*http.Server

	// The control socket: the CLI's session commands find the server here.
	ctl, err := admin.ListenControl(opts.DataDir.Socket())
	if err != nil {
		return err
	}
	defer os.Remove(opts.DataDir.Socket())
	ctlSrv := admin.NewHTTPServer((&admin.Control{Store: core.Store, Verifier: core.Verifier, Log: log}).Handler())
	httpServers = append(httpServers, ctlSrv)
	goServe("control socket", func() error { return ctlSrv.Serve(ctl) })

	fe, err := startFrontEnds(ctx, core, opts, &addrs)
	if err != nil {
		ctl.Close()
		return err
	}

	if cfg.Admin.Listen != "off" {
		l, err := net.Listen("tcp", cfg.Admin.Listen)
		if err != nil {
			ctl.Close()
			return fmt.Errorf("admin.listen %s: %w", cfg.Admin.Listen, err)
		}
		addrs.Admin = l.Addr().String()
		ready := func(ctx context.Context) error {
			// A store that cannot record a used code answers every first
			// sign-in with unavailable: a load balancer should look elsewhere.
			if err := core.Store.Healthy(); err != nil {
				return err
			}
			return fe.ready(ctx)
		}
		srv := admin.NewHTTPServer(admin.Endpoint(core.Metrics.Handler(), ready))
		httpServers = append(httpServers, srv)
		goServe("admin endpoint", func() error { return srv.Serve(l) })
		log.Info("listening", "service", "admin", "addr", addrs.Admin, "paths", "/healthz /readyz /metrics")
	}
	for name, srv := range fe.servers {
		goServe(name, func() error { return srv.Serve(ctx) })
	}

	if opts.Demo {
		if err := demo(ctx, core, opts.Out, addrs, fe.demoMail); err != nil {
			cancel()
			wg.Wait()
			return err
		}
	}
	if opts.Started != nil {
		opts.Started(core, addrs)
	}

	<-ctx.Done()
	log.Info("shutting down")
	shutdownCtx, done := context.WithTimeout(context.Background(), 10*time.Second)
	defer done()
	for _, s := range httpServers {
		s.Shutdown(shutdownCtx)
	}
	wg.Wait()
	if fe.demoMail != nil {
		fe.demoMail.Close()
	}
	if err := saveSessions(core, opts.DataDir.Snapshot()); err != nil {
		log.Error("sessions not saved for the next run", "err", err)
	}
	select {
	case err := <-errc:
		return err
	default:
		return nil
	}
}
