// Package lockprom reports etcdlock metrics to Prometheus.
//
//	reg := prometheus.NewRegistry()
//	m, err := lockprom.New(reg, prometheus.Labels{"service": "billing"})
//	...
//	locker, err := etcdlock.New(cli, etcdlock.WithMetrics(m))
//
// Lock names are not labels: they are unbounded. Every series carries the
// constant labels given to New, so several Lockers can share a registry.
package lockprom

import (
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/leasekit/leasekit/etcdlock"
	"github.com/leasekit/leasekit/internal/promreg"
)

// ErrInvalidOption is returned by New for a nil Registerer, or for a
// constant label named "le" or "reason", names the series use.
var ErrInvalidOption = errors.New("lockprom: invalid option")

// Metrics implements etcdlock.Metrics with Prometheus collectors.
type Metrics struct {
	wait     prometheus.Histogram
	hold     prometheus.Histogram
	acquired prometheus.Counter
	failed   *prometheus.CounterVec
	lost     prometheus.Counter
	waiting  prometheus.Gauge
}

var _ etcdlock.Metrics = (*Metrics)(nil)

// New registers leasekit_lock_* collectors on reg, with constLabels on
// every series, and returns them as an etcdlock.Metrics. It returns an
// error wrapping ErrInvalidOption for a nil reg or a constant label the
// series use, and one wrapping prometheus.AlreadyRegisteredError if reg
// already has collectors of the same names and labels; then it registers
// nothing.
func New(reg prometheus.Registerer, constLabels prometheus.Labels) (*Metrics, error) {
	if err := promreg.Check(reg, constLabels, "reason"); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidOption, err)
	}
	buckets := prometheus.ExponentialBuckets(0.0005, 2, 16) // 0.5ms to ~16s
	m := &Metrics{
		wait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "leasekit_lock_wait_seconds", Help: "Time from asking for a lock to holding it.",
			Buckets: buckets, ConstLabels: constLabels,
		}),
		hold: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "leasekit_lock_hold_seconds", Help: "Time a lock was held until released.",
			Buckets: buckets, ConstLabels: constLabels,
		}),
		acquired: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "leasekit_lock_acquisitions_total", Help: "Locks acquired.", ConstLabels: constLabels,
		}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "leasekit_lock_failures_total", Help: "Acquisitions that failed, by reason.", ConstLabels: constLabels,
		}, []string{"reason"}),
		lost: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "leasekit_lock_losses_total", Help: "Held locks lost before release.", ConstLabels: constLabels,
		}),
		waiting: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "leasekit_lock_waiters", Help: "Callers waiting for a lock now.", ConstLabels: constLabels,
		}),
	}
	if err := promreg.Register(reg, m.wait, m.hold, m.acquired, m.failed, m.lost, m.waiting); err != nil {
		return nil, fmt.Errorf("lockprom: %w", err)
	}
	return m, nil
}

// Acquired implements etcdlock.Metrics.
func (m *Metrics) Acquired(_ string, wait time.Duration) {
	m.acquired.Inc()
	m.wait.Observe(wait.Seconds())
}

// Released implements etcdlock.Metrics.
func (m *Metrics) Released(_ string, held time.Duration) { m.hold.Observe(held.Seconds()) }

// Failed implements etcdlock.Metrics.
func (m *Metrics) Failed(_ string, reason string) { m.failed.WithLabelValues(reason).Inc() }

// Lost implements etcdlock.Metrics.
func (m *Metrics) Lost(string) { m.lost.Inc() }

// Waiting implements etcdlock.Metrics.
func (m *Metrics) Waiting(_ string, delta int) { m.waiting.Add(float64(delta)) }
