// Package metrics exposes stepgate's decisions, sessions and lockouts to
// Prometheus.
package metrics

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/stepgate/stepgate/internal/verifier"
)

// Metrics is a Prometheus registry with stepgate's collectors; it is a
// verifier.Observer.
type Metrics struct {
	reg      *prometheus.Registry
	attempts *prometheus.CounterVec
	lockouts *prometheus.CounterVec
	latency  *prometheus.HistogramVec
}

// New registers the collectors; liveSessions reports the session count.
func New(liveSessions func() int) *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stepgate_attempts_total",
			Help: "Sign-in decisions by protocol, result and reason.",
		}, []string{"protocol", "result", "reason"}),
		lockouts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stepgate_lockouts_total",
			Help: "Lockouts started, by scope (user or addr).",
		}, []string{"scope"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "stepgate_decision_duration_seconds",
			Help:    "Time to decide a sign-in, by protocol and result.",
			Buckets: []float64{.00001, .00005, .0001, .0005, .001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"protocol", "result"}),
	}
	live := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "stepgate_sessions_live",
		Help: "Sessions held (expired ones are dropped by the sweeper within a minute).",
	}, func() float64 { return float64(liveSessions()) })
	m.reg.MustRegister(m.attempts, m.lockouts, m.latency, live,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Registry lets other packages register their own collectors.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Decided counts a decision.
func (m *Metrics) Decided(a *verifier.Attempt, d *verifier.Decision) {
	m.attempts.WithLabelValues(a.Protocol, string(d.Result), string(d.Reason)).Inc()
	m.latency.WithLabelValues(a.Protocol, string(d.Result)).Observe(d.Elapsed.Seconds())
}

// LockedOut counts a lockout.
func (m *Metrics) LockedOut(scope string) { m.lockouts.WithLabelValues(scope).Inc() }

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}
