// Package ratelimitprom reports the events of ratelimit limiters to
// Prometheus. It lives apart from ratelimit so that ratelimit does not
// make its users depend on Prometheus.
//
//	m, err := ratelimitprom.New(prometheus.DefaultRegisterer)
//	if err != nil {
//		return err
//	}
//	lim, err := ratelimit.New(cli, "partner-api", ratelimit.PerSecond(50), ratelimit.WithMetrics(m))
//
// Make one Metrics per registry and share it between limiters: each
// series carries the limiter's name as the label "limiter". Keys are
// never labels, as there can be any number of them.
package ratelimitprom

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/leasekit/leasekit/ratelimit"
)

// ErrNilRegisterer is returned by New for a nil prometheus.Registerer.
var ErrNilRegisterer = errors.New("ratelimitprom: nil registerer")

// Metrics implements ratelimit.Metrics with these Prometheus series, all
// labelled by limiter:
//
//	leasekit_ratelimit_allowed_total       counter: events allowed
//	leasekit_ratelimit_denied_total        counter: events denied
//	leasekit_ratelimit_near_limit_total    counter: allowed calls that left < Burst/10
//	leasekit_ratelimit_cas_conflicts_total counter: compare-and-swaps lost to another writer
//	leasekit_ratelimit_tokens_held         gauge: tokens held by this process from batches
type Metrics struct {
	allowed, denied, near, conflicts *prometheus.CounterVec
	held                             *prometheus.GaugeVec
}

var _ ratelimit.Metrics = (*Metrics)(nil)

// New registers the series on reg, never on the global registry unless
// reg is prometheus.DefaultRegisterer. It fails if reg is nil or already
// holds them.
func New(reg prometheus.Registerer) (*Metrics, error) {
	if reg == nil {
		return nil, ErrNilRegisterer
	}
	counter := func(name, help string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "leasekit", Subsystem: "ratelimit", Name: name, Help: help,
		}, []string{"limiter"})
	}
	m := &Metrics{
		allowed:   counter("allowed_total", "Events allowed."),
		denied:    counter("denied_total", "Events denied."),
		near:      counter("near_limit_total", "Allowed calls that left less than a tenth of the burst."),
		conflicts: counter("cas_conflicts_total", "Compare-and-swaps that lost to another writer and were retried."),
		held: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "leasekit", Subsystem: "ratelimit", Name: "tokens_held",
			Help: "Tokens this process took in batches and has not used yet.",
		}, []string{"limiter"}),
	}
	for _, c := range []prometheus.Collector{m.allowed, m.denied, m.near, m.conflicts, m.held} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("ratelimitprom: register: %w", err)
		}
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
