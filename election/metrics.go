package election

import "time"

// Metrics receives what an Election measures. Implementations must be
// safe for concurrent use and should return quickly: they are called on
// the campaign and resign paths. name is the election's name.
type Metrics interface {
	// Elected is called when this candidate wins, with how long it
	// campaigned.
	Elected(name string, campaigned time.Duration)
	// SteppedDown is called when a term ends, with how long it lasted;
	// lost is true when leadership was lost (lease or key gone) rather
	// than resigned.
	SteppedDown(name string, led time.Duration, lost bool)
	// Failed is called when a campaign fails; reason is "timeout",
	// "canceled", "lost" or "error".
	Failed(name string, reason string)
}

type nopMetrics struct{}

func (nopMetrics) Elected(string, time.Duration)           {}
func (nopMetrics) SteppedDown(string, time.Duration, bool) {}
func (nopMetrics) Failed(string, string)                   {}
