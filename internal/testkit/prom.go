package testkit

import (
	"errors"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
)

// PromAdapter checks what every leasekit Prometheus adapter's New promises
// (docs/design.md, Conventions): newFn is the adapter's New, invalid its
// ErrInvalidOption and vars the labels its series use. A nil Registerer
// and a constant label named "le" or one of vars get invalid; a
// registration that fails part way leaves the registry as it was;
// registering twice wraps prometheus.AlreadyRegisteredError.
func PromAdapter[M any](t *testing.T, newM func(prometheus.Registerer, prometheus.Labels) (M, error), invalid error, vars ...string) {
	t.Helper()
	newFn := func(reg prometheus.Registerer, labels prometheus.Labels) error {
		_, err := newM(reg, labels)
		return err
	}
	require.ErrorIs(t, newFn(nil, nil), invalid, "nil Registerer")
	for _, name := range append([]string{"le"}, vars...) {
		require.ErrorIs(t, newFn(prometheus.NewRegistry(), prometheus.Labels{name: "x"}), invalid, "constant label %q", name)
	}

	// Count the collectors, then fail the registration of the last one.
	reg := prometheus.NewRegistry()
	labels := prometheus.Labels{"service": "test"}
	count := &failing{Registerer: prometheus.NewRegistry(), failAt: -1}
	require.NoError(t, newFn(count, labels))
	require.Greater(t, count.calls, 1)
	last := &failing{Registerer: reg, failAt: count.calls - 1}
	require.ErrorIs(t, newFn(last, labels), errRefused)
	require.NoError(t, newFn(reg, labels), "the failed New left series registered")

	var already prometheus.AlreadyRegisteredError
	err := newFn(reg, labels)
	require.True(t, errors.As(err, &already), "registering twice: %v", err)
	require.NoError(t, newFn(reg, prometheus.Labels{"service": "other"}), "other constant labels")
}

var errRefused = errors.New("testkit: registration refused")

// failing is a Registerer that refuses the registration numbered failAt,
// counting from 0.
type failing struct {
	prometheus.Registerer
	calls, failAt int
}

func (f *failing) Register(c prometheus.Collector) error {
	f.calls++
	if f.calls-1 == f.failAt {
		return errRefused
	}
	return f.Registerer.Register(c)
}
