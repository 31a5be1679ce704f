package promreg_test

import (
	"errors"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/leasekit/leasekit/internal/promreg"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestCheck(t *testing.T) {
	reg := prometheus.NewRegistry()
	require.NoError(t, promreg.Check(reg, nil))
	require.NoError(t, promreg.Check(reg, prometheus.Labels{"service": "a"}, "reason"))
	require.ErrorContains(t, promreg.Check(nil, nil), "nil Registerer")
	require.ErrorContains(t, promreg.Check(reg, prometheus.Labels{"le": "1"}), `"le"`)
	require.ErrorContains(t, promreg.Check(reg, prometheus.Labels{"reason": "x"}, "reason"), `"reason"`)
}

// A registration that fails part way leaves the registry as it was.
func TestRegisterAllOrNone(t *testing.T) {
	reg := prometheus.NewRegistry()
	first := prometheus.NewCounter(prometheus.CounterOpts{Name: "first_total", Help: "h"})
	taken := prometheus.NewCounter(prometheus.CounterOpts{Name: "taken_total", Help: "h"})
	require.NoError(t, reg.Register(taken))

	again := prometheus.NewCounter(prometheus.CounterOpts{Name: "taken_total", Help: "h"})
	err := promreg.Register(reg, first, again)
	var already prometheus.AlreadyRegisteredError
	require.True(t, errors.As(err, &already), "err = %v", err)
	require.True(t, reg.Unregister(taken), "the series registered before stays")
	require.False(t, reg.Unregister(first), "first was unregistered again")

	require.NoError(t, promreg.Register(reg, first, again))
}
