package etcdlock_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/leasekit/leasekit/embedtest"
	"github.com/leasekit/leasekit/etcdlock"
	"github.com/leasekit/leasekit/internal/testkit"
)

// TestInspectSemaphoreAndTryAcquireWithOptions fills a semaphore of two
// with TryAcquireWithOptions (AutoRefresh), queues a waiter, and checks
// what InspectSemaphore reports.
func TestInspectSemaphoreAndTryAcquireWithOptions(t *testing.T) {
	c := embedtest.New(t)
	ctx := testkit.Context(t)
	l := newLocker(t, c.Client())
	admin := newLocker(t, c.Client())

	info, err := admin.InspectSemaphore(ctx, "pool")
	require.NoError(t, err)
	require.Zero(t, info.Limit)
	require.Empty(t, info.Holders)

	s, err := l.Semaphore("pool", 2)
	require.NoError(t, err)
	opts := etcdlock.LockOptions{TTL: time.Second, AutoRefresh: true, Metadata: map[string]string{"job": "a"}}
	var held []etcdlock.Lock
	for range 2 {
		lk, ok, err := s.TryAcquireWithOptions(ctx, opts)
		require.NoError(t, err)
		require.True(t, ok)
		held = append(held, lk)
	}
	_, ok, err := s.TryAcquireWithOptions(ctx, opts)
	require.NoError(t, err)
	require.False(t, ok, "both permits are taken")
	_, _, err = s.TryAcquireWithOptions(ctx, etcdlock.LockOptions{Key: "other", TTL: time.Second})
	require.ErrorIs(t, err, etcdlock.ErrInvalidKey)

	got := goAcquire(t, c.Client(), etcdlock.DefaultPrefix+"%sem/pool/q/", func() (etcdlock.Lock, error) {
		return s.Acquire(ctx, 10*time.Second)
	})

	info, err = admin.InspectSemaphore(ctx, "pool")
	require.NoError(t, err)
	require.Equal(t, 2, info.Limit)
	require.Len(t, info.Holders, 2)
	require.Len(t, info.Waiters, 1)
	require.Equal(t, held[0].Token(), info.Holders[0].Token)
	require.Equal(t, held[1].Token(), info.Holders[1].Token)
	require.Equal(t, "a", info.Holders[0].Metadata["job"])

	// AutoRefresh holds of one Locker share its keepalive lease.
	require.Equal(t, info.Holders[0].LeaseID, info.Holders[1].LeaseID)
	require.NotEqual(t, info.Holders[0].LeaseID, info.Waiters[0].LeaseID)
	require.NoError(t, held[0].Release(ctx))
	r := <-got
	require.NoError(t, r.err)
	require.NoError(t, r.lk.Release(ctx))
	require.NoError(t, held[1].Release(ctx))
}
