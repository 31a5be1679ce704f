package etcdlock_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/leasekit/leasekit/embedtest"
	"github.com/leasekit/leasekit/etcdlock"
	"github.com/leasekit/leasekit/internal/testkit"
)

// A semaphore's limit binds while its name is in use, and not after: a
// limit stored on a Locker's shared lease (AutoRefresh) must not refuse
// another limit once the queue is empty, whether the acquisition that
// stored it held a permit or its join's outcome was never known.
func TestSemaphoreLimitEndsWithItsUse(t *testing.T) {
	c := embedtest.New(t)
	ctx := testkit.Context(t)
	admin := c.Client()
	p, err := c.NewProxy(0)
	require.NoError(t, err)
	slow, err := c.NewClient(clientv3.Config{Endpoints: []string{p.Endpoint()}})
	require.NoError(t, err)
	l := newLocker(t, slow)
	other := newLocker(t, admin)
	auto := etcdlock.LockOptions{TTL: 5 * time.Second, AutoRefresh: true}
	queue := semPrefix + "pool/q/"

	t.Run("after a permit", func(t *testing.T) {
		two, err := l.Semaphore("pool", 2)
		require.NoError(t, err)
		lk, err := two.AcquireWithOptions(ctx, auto)
		require.NoError(t, err)
		require.NoError(t, lk.Release(ctx))
		three, err := other.Semaphore("pool", 3)
		require.NoError(t, err)
		lk, err = three.AcquireWithOptions(ctx, auto)
		require.NoError(t, err, "nobody uses the name: a new limit is stored")
		require.NoError(t, lk.Release(ctx))
	})

	t.Run("after a join of unknown outcome", func(t *testing.T) {
		two, err := l.Semaphore("ambiguous", 2)
		require.NoError(t, err)
		// With the shared lease granted first, the join is the only call:
		// it reaches etcd after its ctx has ended.
		warm, err := l.LockWithOptions(ctx, etcdlock.LockOptions{Key: "warm", TTL: auto.TTL, AutoRefresh: true})
		require.NoError(t, err)
		defer warm.Release(ctx)
		p.SetLatency(300 * time.Millisecond)
		jctx, cancel := context.WithTimeout(ctx, 150*time.Millisecond)
		_, err = two.AcquireWithOptions(jctx, auto)
		cancel()
		require.ErrorIs(t, err, context.DeadlineExceeded)
		p.SetLatency(0)
		// The join lands, storing the limit; the Locker's janitor then
		// deletes its key.
		testkit.AwaitKeys(t, admin, semPrefix+"ambiguous/n", 1)
		testkit.AwaitKeys(t, admin, semPrefix+"ambiguous/q/", 0)
		three, err := other.Semaphore("ambiguous", 3)
		require.NoError(t, err)
		lk, ok, err := three.TryAcquire(ctx, 5*time.Second)
		require.NoError(t, err, "nobody uses the name: a new limit is stored")
		require.True(t, ok)
		require.NoError(t, lk.Release(ctx))
	})
	require.Zero(t, testkit.CountKeys(t, admin, queue))
}
