package etcdlock_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/leasekit/leasekit/embedtest"
	"github.com/leasekit/leasekit/etcdlock"
	"github.com/leasekit/leasekit/internal/testkit"
)

func newLocker(t *testing.T, cli *clientv3.Client, opts ...etcdlock.Option) *etcdlock.Locker {
	t.Helper()
	l, err := etcdlock.New(cli, opts...)
	require.NoError(t, err)
	t.Cleanup(func() { l.Close() })
	return l
}

func TestLockReleaseBasics(t *testing.T) {
	c := embedtest.New(t)
	ctx := testkit.Context(t)
	l := newLocker(t, c.Client())
	for _, auto := range []bool{false, true} {
		t.Run(fmt.Sprintf("AutoRefresh=%v", auto), func(t *testing.T) {
			lk, err := l.LockWithOptions(ctx, etcdlock.LockOptions{Key: "basics", TTL: 5 * time.Second, AutoRefresh: auto,
				Metadata: map[string]string{"job": "x"}})
			require.NoError(t, err)
			require.Equal(t, "basics", lk.Key())
			require.Equal(t, 5*time.Second, lk.TTL())
			require.Positive(t, lk.Token())
			require.Equal(t, "x", lk.Metadata()["job"])
			require.WithinDuration(t, time.Now().Add(5*time.Second), lk.ExpiresAt(), 2*time.Second)
			ok, err := lk.IsValid(ctx)
			require.NoError(t, err)
			require.True(t, ok)

			resp, err := c.Client().Txn(ctx).If(lk.Guard()).Commit()
			require.NoError(t, err)
			require.True(t, resp.Succeeded, "guard must hold while the lock is held")

			require.NoError(t, lk.Release(ctx))
			<-lk.Done()
			require.ErrorIs(t, lk.Release(ctx), etcdlock.ErrNotHeld)
			require.ErrorIs(t, lk.Refresh(ctx, time.Second), etcdlock.ErrNotHeld)
			ok, err = lk.IsValid(ctx)
			require.NoError(t, err)
			require.False(t, ok)
			resp, err = c.Client().Txn(ctx).If(lk.Guard()).Commit()
			require.NoError(t, err)
			require.False(t, resp.Succeeded, "guard must fail after release")
			require.Zero(t, testkit.CountKeys(t, c.Client(), etcdlock.DefaultPrefix))
		})
	}
}

func TestFIFOAndTokens(t *testing.T) {
	c := embedtest.New(t)
	ctx := testkit.Context(t)
	const n = 5
	lockers := make([]*etcdlock.Locker, n)
	for i := range lockers {
		cli, err := c.NewClient()
		require.NoError(t, err)
		lockers[i] = newLocker(t, cli)
	}
	first, err := lockers[0].Lock(ctx, "fifo", 10*time.Second)
	require.NoError(t, err)

	var mu sync.Mutex
	var order []int
	var tokens []int64
	var wg sync.WaitGroup
	for i := 1; i < n; i++ {
		// Queue the waiters one after another so their order is known.
		before := testkit.CountKeys(t, c.Client(), etcdlock.DefaultPrefix)
		wg.Add(1)
		go func() {
			defer wg.Done()
			lk, err := lockers[i].Lock(ctx, "fifo", 10*time.Second)
			if !assert.NoError(t, err) {
				return
			}
			mu.Lock()
			order = append(order, i)
			tokens = append(tokens, lk.Token())
			mu.Unlock()
			assert.NoError(t, lk.Release(ctx))
		}()
		testkit.AwaitKeys(t, c.Client(), etcdlock.DefaultPrefix, before+1)
	}
	require.NoError(t, first.Release(ctx))
	wg.Wait()
	require.Equal(t, []int{1, 2, 3, 4}, order)
	for i := 1; i < len(tokens); i++ {
		require.Greater(t, tokens[i], tokens[i-1])
	}
	require.Greater(t, tokens[0], first.Token())
	require.Zero(t, testkit.CountKeys(t, c.Client(), etcdlock.DefaultPrefix))
}

func TestTryLock(t *testing.T) {
	c := embedtest.New(t)
	ctx := testkit.Context(t)
	l := newLocker(t, c.Client())
	lk, ok, err := l.TryLock(ctx, "try", 5*time.Second)
	require.NoError(t, err)
	require.True(t, ok)

	status, err := c.Client().Status(ctx, c.Endpoints()[0])
	require.NoError(t, err)
	other, ok, err := l.TryLock(ctx, "try", 5*time.Second)
	require.NoError(t, err)
	require.False(t, ok)
	require.Nil(t, other)
	after, err := c.Client().Status(ctx, c.Endpoints()[0])
	require.NoError(t, err)
	require.Equal(t, status.Header.Revision, after.Header.Revision, "a failed TryLock must write nothing")

	require.NoError(t, lk.Release(ctx))
	lk, ok, err = l.TryLock(ctx, "try", 5*time.Second)
	require.NoError(t, err)
	require.True(t, ok)
	require.NoError(t, lk.Release(ctx))
}

func TestTimeoutLeavesNoKey(t *testing.T) {
	c := embedtest.New(t)
	ctx := testkit.Context(t)
	l := newLocker(t, c.Client())
	held, err := l.Lock(ctx, "busy", 5*time.Second)
	require.NoError(t, err)
	_, err = l.LockWithOptions(ctx, etcdlock.LockOptions{Key: "busy", TTL: 5 * time.Second, Timeout: 50 * time.Millisecond})
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Equal(t, 1, testkit.CountKeys(t, c.Client(), etcdlock.DefaultPrefix))

	cctx, cancel := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() {
		_, err := l.Lock(cctx, "busy", 5*time.Second)
		errc <- err
	}()
	testkit.AwaitKeys(t, c.Client(), etcdlock.DefaultPrefix, 2)
	cancel()
	require.ErrorIs(t, <-errc, context.Canceled)
	require.Equal(t, 1, testkit.CountKeys(t, c.Client(), etcdlock.DefaultPrefix))
	require.NoError(t, held.Release(ctx))
	require.Zero(t, testkit.CountKeys(t, c.Client(), etcdlock.DefaultPrefix))
}
