// Package promreg holds what leasekit's Prometheus adapters (lockprom,
// electionprom, ratelimitprom) share, so that their New functions check
// and register alike: a nil Registerer or a constant label that cannot
// work is an error, never a panic, and a registration that fails leaves
// the registry as it was.
package promreg

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Check returns an error for a nil reg, or for constant labels that clash
// with a label the adapter's series use: "le" on histograms (where
// client_golang panics) and the names in vars, the adapter's own labels.
func Check(reg prometheus.Registerer, constLabels prometheus.Labels, vars ...string) error {
	if reg == nil {
		return errors.New("nil Registerer")
	}
	for _, name := range append([]string{"le"}, vars...) {
		if _, ok := constLabels[name]; ok {
			return fmt.Errorf("constant label %q: the series use that name", name)
		}
	}
	return nil
}

// Register registers every collector on reg, or none: if one fails, it
// unregisters those it registered and returns that error, which wraps a
// prometheus.AlreadyRegisteredError when reg already has the series.
func Register(reg prometheus.Registerer, cs ...prometheus.Collector) error {
	for i, c := range cs {
		if err := reg.Register(c); err != nil {
			for _, done := range cs[:i] {
				reg.Unregister(done)
			}
			return fmt.Errorf("register: %w", err)
		}
	}
	return nil
}
