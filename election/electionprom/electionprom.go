// Package electionprom reports election metrics to Prometheus.
//
//	reg := prometheus.NewRegistry()
//	m, err := electionprom.New(reg, prometheus.Labels{"service": "billing"})
//	...
//	e, err := election.New(cli, "billing-cron", election.WithMetrics(m))
//
// Election names are not labels: they are unbounded. Every series carries
// the constant labels given to New, so several Elections can share a
// registry when each has its own values for the same label names, such
// as {"election": "billing-cron"}.
package electionprom

import (
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/leasekit/leasekit/election"
	"github.com/leasekit/leasekit/internal/promreg"
)

// ErrInvalidOption is returned by New for a nil Registerer, or for a
// constant label named "le" or "reason", names the series use.
var ErrInvalidOption = errors.New("electionprom: invalid option")

// Metrics implements election.Metrics with Prometheus collectors.
type Metrics struct {
	leading  prometheus.Gauge
	elected  prometheus.Counter
	lost     prometheus.Counter
	failed   *prometheus.CounterVec
	campaign prometheus.Histogram
	term     prometheus.Histogram
}

var _ election.Metrics = (*Metrics)(nil)

// New registers leasekit_election_* collectors on reg, with constLabels
// on every series, and returns them as an election.Metrics. It returns an
// error wrapping ErrInvalidOption for a nil reg or a constant label the
// series use, and one wrapping prometheus.AlreadyRegisteredError if reg
// already has collectors of the same names and labels; then it registers
// nothing.
func New(reg prometheus.Registerer, constLabels prometheus.Labels) (*Metrics, error) {
	if err := promreg.Check(reg, constLabels, "reason"); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidOption, err)
	}
	m := &Metrics{
		leading: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "leasekit_election_leading", Help: "Terms this process holds now: 1 while it leads.",
			ConstLabels: constLabels,
		}),
		elected: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "leasekit_election_elected_total", Help: "Campaigns won.", ConstLabels: constLabels,
		}),
		lost: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "leasekit_election_losses_total", Help: "Terms lost (lease or key gone) rather than resigned.",
			ConstLabels: constLabels,
		}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "leasekit_election_campaign_failures_total", Help: "Campaigns that failed, by reason.",
			ConstLabels: constLabels,
		}, []string{"reason"}),
		campaign: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "leasekit_election_campaign_seconds", Help: "Time from campaigning to leading.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 20), ConstLabels: constLabels, // 0.5ms to ~4min
		}),
		term: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "leasekit_election_term_seconds", Help: "How long terms lasted.",
			Buckets: prometheus.ExponentialBuckets(0.01, 4, 12), ConstLabels: constLabels, // 10ms to ~12h
		}),
	}
	if err := promreg.Register(reg, m.leading, m.elected, m.lost, m.failed, m.campaign, m.term); err != nil {
		return nil, fmt.Errorf("electionprom: %w", err)
	}
	return m, nil
}

// Elected implements election.Metrics.
func (m *Metrics) Elected(_ string, campaigned time.Duration) {
	m.elected.Inc()
	m.leading.Inc()
	m.campaign.Observe(campaigned.Seconds())
}

// SteppedDown implements election.Metrics.
func (m *Metrics) SteppedDown(_ string, led time.Duration, lost bool) {
	m.leading.Dec()
	m.term.Observe(led.Seconds())
	if lost {
		m.lost.Inc()
	}
}

// Failed implements election.Metrics.
func (m *Metrics) Failed(_ string, reason string) { m.failed.WithLabelValues(reason).Inc() }
