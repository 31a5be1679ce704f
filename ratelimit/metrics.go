package ratelimit

// Metrics receives a limiter's events. Implementations must be safe for
// concurrent use and fast: they are called on every Allow. The limiter
// passes its own name, so one Metrics can serve many limiters; keys are
// never passed, as they are unbounded. ratelimitprom implements Metrics
// with Prometheus.
type Metrics interface {
	// Allowed counts n events allowed.
	Allowed(limiter string, n int)
	// Denied counts n events denied.
	Denied(limiter string, n int)
	// NearLimit counts allowed calls that left less than a tenth of Burst
	// in the bucket.
	NearLimit(limiter string)
	// Conflict counts compare-and-swaps that lost to another writer and
	// had to be retried.
	Conflict(limiter string)
	// Held adds delta to the number of tokens this instance holds from
	// batches; it goes down as tokens are used or expire.
	Held(limiter string, delta int)
}

type nopMetrics struct{}

func (nopMetrics) Allowed(string, int) {}
func (nopMetrics) Denied(string, int)  {}
func (nopMetrics) NearLimit(string)    {}
func (nopMetrics) Conflict(string)     {}
func (nopMetrics) Held(string, int)    {}

// OutageMetrics is implemented by a Metrics that also wants to know about
// etcd outages; the limiter checks for it with a type assertion, so a
// Metrics without these methods keeps working. ratelimitprom implements
// it.
type OutageMetrics interface {
	// Unreachable reports that this instance found etcd unreachable, or
	// refusing, (true) or reached it again (false).
	Unreachable(limiter string, down bool)
	// WithoutEtcd counts n events decided by the outage policy because
	// etcd could not be used: outcome is OutcomeAllowed, OutcomeDenied or
	// OutcomeRefused. Denials answered from the cached bucket state, as
	// they normally are, do not count: they need no etcd.
	WithoutEtcd(limiter string, outcome string, n int)
	// LiveInstances reports the number of live instances of the limiter
	// this instance counts, under FailLocal, each time it changes.
	LiveInstances(limiter string, n int)
}

// Outcomes of decisions made without etcd, passed to
// OutageMetrics.WithoutEtcd.
const (
	OutcomeAllowed = "allowed" // allowed by FailOpen or FailLocal
	OutcomeDenied  = "denied"  // denied by FailLocal's local share
	OutcomeRefused = "refused" // refused with ErrUnavailable by FailClosed, or by FailLocal before it knows the number of instances
)

type nopOutageMetrics struct{}

func (nopOutageMetrics) Unreachable(string, bool)        {}
func (nopOutageMetrics) WithoutEtcd(string, string, int) {}
func (nopOutageMetrics) LiveInstances(string, int)       {}
