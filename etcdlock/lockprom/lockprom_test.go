package lockprom_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/leasekit/leasekit/embedtest"
	"github.com/leasekit/leasekit/etcdlock"
	"github.com/leasekit/leasekit/etcdlock/lockprom"
	"github.com/leasekit/leasekit/internal/testkit"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, embedtest.LeakOptions()...) }

func TestNew(t *testing.T) {
	testkit.PromAdapter(t, lockprom.New, lockprom.ErrInvalidOption, "reason")
}

func TestMetricsFromALocker(t *testing.T) {
	c := embedtest.New(t)
	ctx := testkit.Context(t)
	reg := prometheus.NewRegistry()
	m, err := lockprom.New(reg, prometheus.Labels{"service": "test"})
	require.NoError(t, err)
	_, err = lockprom.New(reg, prometheus.Labels{"service": "test"})
	require.Error(t, err, "registering twice must fail, not panic")

	l, err := etcdlock.New(c.Client(), etcdlock.WithMetrics(m))
	require.NoError(t, err)
	defer l.Close()
	lk, err := l.Lock(ctx, "m", 5*time.Second)
	require.NoError(t, err)
	_, err = l.LockWithOptions(ctx, etcdlock.LockOptions{Key: "m", TTL: 5 * time.Second, Timeout: 10 * time.Millisecond})
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.NoError(t, lk.Release(ctx))

	n, err := testutil.GatherAndCount(reg, "leasekit_lock_hold_seconds", "leasekit_lock_wait_seconds")
	require.NoError(t, err)
	require.Equal(t, 2, n, "one series each for hold and wait times")
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP leasekit_lock_acquisitions_total Locks acquired.
# TYPE leasekit_lock_acquisitions_total counter
leasekit_lock_acquisitions_total{service="test"} 1
# HELP leasekit_lock_failures_total Acquisitions that failed, by reason.
# TYPE leasekit_lock_failures_total counter
leasekit_lock_failures_total{reason="timeout",service="test"} 1
# HELP leasekit_lock_waiters Callers waiting for a lock now.
# TYPE leasekit_lock_waiters gauge
leasekit_lock_waiters{service="test"} 0
`), "leasekit_lock_acquisitions_total", "leasekit_lock_failures_total", "leasekit_lock_waiters"))
}
