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

// TestCutOffHolderIsToldFirst cuts a holder off from etcd with a proxy
// that drops its traffic. The holder must be told it lost the lock before
// the waiter gets it, and its late guarded write must fail once it can
// reach etcd again, while the new holder's succeeds.
func TestCutOffHolderIsToldFirst(t *testing.T) {
	for _, auto := range []bool{true, false} {
		t.Run(fmt.Sprintf("AutoRefresh=%v", auto), func(t *testing.T) {
			c := embedtest.New(t)
			ctx := testkit.Context(t)
			p, err := c.NewProxy(0)
			require.NoError(t, err)
			cut, err := c.NewClient(clientv3.Config{Endpoints: []string{p.Endpoint()}})
			require.NoError(t, err)
			holder := newLocker(t, cut)

			// 2s, not the 1s minimum: keepalives on a loaded machine under
			// -race can take long enough to make a 1s lease look lost.
			lk, err := holder.LockWithOptions(ctx, etcdlock.LockOptions{Key: "cut", TTL: 2 * time.Second, AutoRefresh: auto})
			require.NoError(t, err)
			next := toldFirst(t, ctx, c.Client(), p, lk)

			// Heal drops the connections that lost bytes; the client then
			// reconnects, so the first calls may fail.
			p.Heal()
			var late *clientv3.TxnResponse
			require.NoError(t, testkit.Retry(ctx, func(ctx context.Context) error {
				late, err = cut.Txn(ctx).If(lk.Guard()).Then(clientv3.OpPut("/data", "stale")).Commit()
				return err
			}))
			require.False(t, late.Succeeded, "the old holder's guarded write must be refused")
			fresh, err := c.Client().Txn(ctx).If(next.Guard()).Then(clientv3.OpPut("/data", "fresh")).Commit()
			require.NoError(t, err)
			require.True(t, fresh.Succeeded)
			require.NoError(t, next.Release(ctx))
		})
	}
}

// toldFirst cuts the holder of lk off and checks that it is told of the
// loss before another Locker, through cli, acquires the lock. It returns
// the new hold.
func toldFirst(t *testing.T, ctx context.Context, cli *clientv3.Client, p *embedtest.Proxy, lk etcdlock.Lock) etcdlock.Lock {
	t.Helper()
	waiter := newLocker(t, cli)
	var mu sync.Mutex
	var events []string
	record := func(s string) { mu.Lock(); events = append(events, s); mu.Unlock() }
	told := make(chan struct{})
	go func() { <-lk.Done(); record("holder told"); close(told) }()
	keys := testkit.CountKeys(t, cli, etcdlock.DefaultPrefix)
	got := make(chan etcdlock.Lock, 1)
	go func() {
		next, err := waiter.Lock(ctx, lk.Key(), 5*time.Second)
		if assert.NoError(t, err) {
			record("next acquired")
		}
		got <- next
	}()
	testkit.AwaitKeys(t, cli, etcdlock.DefaultPrefix, keys+1)
	p.Cut()
	next := <-got
	require.NotNil(t, next)
	<-told
	mu.Lock()
	require.Equal(t, []string{"holder told", "next acquired"}, events)
	mu.Unlock()
	require.ErrorIs(t, lk.Err(), etcdlock.ErrLockLost)
	return next
}
