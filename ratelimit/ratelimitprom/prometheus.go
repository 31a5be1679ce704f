// Package ratelimitprom reports the events of ratelimit limiters to
// Prometheus. It lives apart from ratelimit so that ratelimit does not
// make its users depend on Prometheus.
//
//	m, err := ratelimitprom.New(prometheus.DefaultRegisterer, nil)
//	if err != nil {
//		return err
//	}
//	lim, err := ratelimit.New(cli, "partner-api", ratelimit.PerSecond(50), ratelimit.WithMetrics(m))
//
// Make one Metrics per registry and share it between limiters: each
// series carries the limiter's name as the label "limiter". Keys are
// never labels, as there can be any number of them. Every series also
// carries the constant labels given to New.
package ratelimitprom

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/leasekit/leasekit/internal/promreg"
	"github.com/leasekit/leasekit/ratelimit"
)

// Errors returned by New. Check them with errors.Is.
var (
	// ErrInvalidOption is returned by New for a nil Registerer, or for a
	// constant label named "le", "limiter" or "outcome", names the series
	// use.
	ErrInvalidOption = errors.New("ratelimitprom: invalid option")
	// ErrNilRegisterer is wrapped, beside ErrInvalidOption, by the error
	// New returns for a nil prometheus.Registerer.
	//
	// Deprecated: Check for ErrInvalidOption, which every leasekit
	// Prometheus adapter returns for a nil Registerer.
	ErrNilRegisterer = errors.New("ratelimitprom: nil registerer")
)

// Metrics implements ratelimit.Metrics and ratelimit.OutageMetrics with
// these Prometheus series, all labelled by limiter:
//
//	leasekit_ratelimit_allowed_total       counter: events allowed
//	leasekit_ratelimit_denied_total        counter: events denied
//	leasekit_ratelimit_near_limit_total    counter: allowed calls that left < Burst/10
//	leasekit_ratelimit_cas_conflicts_total counter: compare-and-swaps lost to another writer
//	leasekit_ratelimit_tokens_held         gauge: tokens held by this process from batches
//	leasekit_ratelimit_without_etcd_total  counter: events decided by the outage policy, by outcome
//	leasekit_ratelimit_etcd_unreachable    gauge: 1 while this process finds etcd unreachable
//	leasekit_ratelimit_live_instances      gauge: live instances counted under FailLocal
//
// without_etcd_total has a second label, outcome: "allowed" (FailOpen or
// FailLocal), "denied" (FailLocal's share used up) or "refused"
// (FailClosed, or FailLocal before it has counted the instances). Events
// allowed or denied without etcd count in allowed_total and denied_total
// too.
type Metrics struct {
	allowed, denied, near, conflicts *prometheus.CounterVec
	withoutEtcd                      *prometheus.CounterVec
	held, unreachable, live          *prometheus.GaugeVec
}

var (
	_ ratelimit.Metrics       = (*Metrics)(nil)
	_ ratelimit.OutageMetrics = (*Metrics)(nil)
)

// New registers the series on reg, never on the global registry unless
// reg is prometheus.DefaultRegisterer, with constLabels on every series,
// and returns them as a ratelimit.Metrics. It returns an error wrapping
// ErrInvalidOption for a nil reg or a constant label the series use, and
// one wrapping prometheus.AlreadyRegisteredError if reg already has
// collectors of the same names and labels; then it registers nothing.
func New(reg prometheus.Registerer, constLabels prometheus.Labels) (*Metrics, error) {
	if reg == nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidOption, ErrNilRegisterer)
	}
	if err := promreg.Check(reg, constLabels, "limiter", "outcome"); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidOption, err)
	}
	counter := func(name, help string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "leasekit", Subsystem: "ratelimit", Name: name, Help: help, ConstLabels: constLabels,
		}, []string{"limiter"})
	}
	gauge := func(name, help string) *prometheus.GaugeVec {
		return prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "leasekit", Subsystem: "ratelimit", Name: name, Help: help, ConstLabels: constLabels,
		}, []string{"limiter"})
	}
	m := &Metrics{
		allowed:   counter("allowed_total", "Events allowed."),
		denied:    counter("denied_total", "Events denied."),
		near:      counter("near_limit_total", "Allowed calls that left less than a tenth of the burst."),
		conflicts: counter("cas_conflicts_total", "Compare-and-swaps that lost to another writer and were retried."),
		withoutEtcd: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "leasekit", Subsystem: "ratelimit", Name: "without_etcd_total",
			Help:        "Events decided by the outage policy because etcd could not be used, by outcome.",
			ConstLabels: constLabels,
		}, []string{"limiter", "outcome"}),
		held:        gauge("tokens_held", "Tokens this process took in batches and has not used yet."),
		unreachable: gauge("etcd_unreachable", "1 while this process finds etcd unreachable or refusing, else 0."),
		live:        gauge("live_instances", "Live instances of the limiter counted by this process (FailLocal only)."),
	}
	if err := promreg.Register(reg, m.allowed, m.denied, m.near, m.conflicts, m.held, m.withoutEtcd, m.unreachable, m.live); err != nil {
		return nil, fmt.Errorf("ratelimitprom: %w", err)
	}
	return m, nil
}

// Allowed implements ratelimit.Metrics.
func (m *Metrics) Allowed(limiter string, n int) { m.allowed.WithLabelValues(limiter).Add(float64(n)) }

// Denied implements ratelimit.Metrics.
func (m *Metrics) Denied(limiter string, n int) { m.denied.WithLabelValues(limiter).Add(float64(n)) }

// NearLimit implements ratelimit.Metrics.
func (m *Metrics) NearLimit(limiter string) { m.near.WithLabelValues(limiter).Inc() }

// Conflict implements ratelimit.Metrics.
func (m *Metrics) Conflict(limiter string) { m.conflicts.WithLabelValues(limiter).Inc() }

// Held implements ratelimit.Metrics.
func (m *Metrics) Held(limiter string, delta int) {
	m.held.WithLabelValues(limiter).Add(float64(delta))
}

// Unreachable implements ratelimit.OutageMetrics.
func (m *Metrics) Unreachable(limiter string, down bool) {
	v := 0.0
	if down {
		v = 1
	}
	m.unreachable.WithLabelValues(limiter).Set(v)
}

// WithoutEtcd implements ratelimit.OutageMetrics.
func (m *Metrics) WithoutEtcd(limiter, outcome string, n int) {
	m.withoutEtcd.WithLabelValues(limiter, outcome).Add(float64(n))
}

// LiveInstances implements ratelimit.OutageMetrics.
func (m *Metrics) LiveInstances(limiter string, n int) {
	m.live.WithLabelValues(limiter).Set(float64(n))
}
