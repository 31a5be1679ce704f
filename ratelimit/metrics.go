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
