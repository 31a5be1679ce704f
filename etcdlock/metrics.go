package etcdlock

import "time"

// Metrics receives what a Locker measures. Implementations must be safe
// for concurrent use and should return quickly: they are called on the
// acquire and release paths. The name is the lock's name; an
// implementation exporting it as a label should bound its cardinality.
type Metrics interface {
	// Acquired is called when a lock is granted, with how long it waited.
	Acquired(name string, wait time.Duration)
	// Released is called when a hold ends by Release or Close, with how
	// long it was held.
	Released(name string, held time.Duration)
	// Failed is called when an acquisition fails; reason is "timeout",
	// "canceled", "lost" or "error".
	Failed(name string, reason string)
	// Lost is called when a held lock is lost before its release.
	Lost(name string)
	// Waiting is called with +1 when a caller starts waiting and -1 when
	// it stops.
	Waiting(name string, delta int)
}

type nopMetrics struct{}

func (nopMetrics) Acquired(string, time.Duration) {}
func (nopMetrics) Released(string, time.Duration) {}
func (nopMetrics) Failed(string, string)          {}
func (nopMetrics) Lost(string)                    {}
func (nopMetrics) Waiting(string, int)            {}
