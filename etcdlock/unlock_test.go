package etcdlock_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/leasekit/leasekit/embedtest"
	"github.com/leasekit/leasekit/etcdlock"
	"github.com/leasekit/leasekit/internal/testkit"
)

// TestForceUnlockBreaksOnlyTheHolder breaks a stuck AutoRefresh holder
// whose Locker holds a second lock on the same shared lease: the holder is
// told, the waiter gets the lock, and the other lock stays held.
func TestForceUnlockBreaksOnlyTheHolder(t *testing.T) {
	c := embedtest.New(t)
	ctx := testkit.Context(t)
	holderCli, err := c.NewClient()
	require.NoError(t, err)
	holder := newLocker(t, holderCli)
	admin := newLocker(t, c.Client())
	waiter := newLocker(t, c.Client())

	opts := etcdlock.LockOptions{Key: "stuck", TTL: 30 * time.Second, AutoRefresh: true}
	stuck, err := holder.LockWithOptions(ctx, opts)
	require.NoError(t, err)
	opts.Key = "neighbour"
	neighbour, err := holder.LockWithOptions(ctx, opts)
	require.NoError(t, err)

	got := goAcquire(t, c.Client(), etcdlock.DefaultPrefix, func() (etcdlock.Lock, error) {
		return waiter.Lock(ctx, "stuck", 30*time.Second)
	})

	// A token that does not hold the lock breaks nothing.
	_, err = admin.ForceUnlock(ctx, "stuck", stuck.Token()+1000)
	require.ErrorIs(t, err, etcdlock.ErrNotHeld)
	require.NoError(t, stuck.Err())

	broken, err := admin.ForceUnlock(ctx, "stuck", stuck.Token())
	require.NoError(t, err)
	require.Equal(t, stuck.Token(), broken.Token)
	require.Equal(t, stuck.Metadata()["pid"], broken.Metadata["pid"])
	<-stuck.Done()
	require.ErrorIs(t, stuck.Err(), etcdlock.ErrLockLost)
	r := <-got
	require.NoError(t, r.err)
	require.Greater(t, r.lk.Token(), stuck.Token())

	// The neighbour on the same lease is untouched.
	require.NoError(t, neighbour.Err())
	ok, err := neighbour.IsValid(ctx)
	require.NoError(t, err)
	require.True(t, ok)

	require.ErrorIs(t, stuck.Release(ctx), etcdlock.ErrNotHeld)
	require.NoError(t, r.lk.Release(ctx))
	_, err = admin.ForceUnlock(ctx, "stuck", stuck.Token())
	require.ErrorIs(t, err, etcdlock.ErrNotHeld)
	_, err = admin.ForceUnlock(ctx, "stuck", 0)
	require.ErrorIs(t, err, etcdlock.ErrNotHeld, "the lock is free")
	require.NoError(t, neighbour.Release(ctx))
}

// TestForceUnlockNeverDeletesTheNextHolder breaks a hold by token after
// the same Locker has reused the hold's key for a new hold: nothing is
// deleted.
func TestForceUnlockNeverDeletesTheNextHolder(t *testing.T) {
	c := embedtest.New(t)
	ctx := testkit.Context(t)
	l := newLocker(t, c.Client())
	admin := newLocker(t, c.Client())
	first, err := l.Lock(ctx, "reuse", 10*time.Second)
	require.NoError(t, err)
	require.NoError(t, first.Release(ctx))
	second, err := l.Lock(ctx, "reuse", 10*time.Second)
	require.NoError(t, err)
	info, err := admin.Inspect(ctx, "reuse")
	require.NoError(t, err)
	require.Equal(t, second.Token(), info.Holder.Token)

	_, err = admin.ForceUnlock(ctx, "reuse", first.Token())
	require.ErrorIs(t, err, etcdlock.ErrNotHeld)
	require.NoError(t, second.Err())
	ok, err := second.IsValid(ctx)
	require.NoError(t, err)
	require.True(t, ok)
	require.NoError(t, second.Release(ctx))
}

// TestInteropWithConcurrencyMutex checks the documented guarantee that a
// leasekit mutex and etcd's concurrency.Mutex on KeyPrefix exclude each
// other both ways, and that Inspect and ForceUnlock see etcd's holders.
func TestInteropWithConcurrencyMutex(t *testing.T) {
	c := embedtest.New(t)
	ctx := testkit.Context(t)
	l := newLocker(t, c.Client())
	p, err := l.KeyPrefix("tenant/acme")
	require.NoError(t, err)
	require.Equal(t, "/leasekit/lock/tenant%2Facme/", p)
	s, err := concurrency.NewSession(c.Client(), concurrency.WithTTL(10))
	require.NoError(t, err)
	defer s.Close()
	m := concurrency.NewMutex(s, strings.TrimSuffix(p, "/"))

	// leasekit holds: etcd's TryLock is refused, its Lock waits.
	lk, err := l.Lock(ctx, "tenant/acme", 10*time.Second)
	require.NoError(t, err)
	require.ErrorIs(t, m.TryLock(ctx), concurrency.ErrLocked)
	locked := make(chan error, 1)
	go func() { locked <- m.Lock(ctx) }()
	testkit.AwaitKeys(t, c.Client(), p, 2)
	select {
	case err := <-locked:
		require.FailNowf(t, "concurrency.Mutex locked while leasekit held", "%v", err)
	default:
	}
	require.NoError(t, lk.Release(ctx))
	require.NoError(t, <-locked)

	// etcd's mutex holds: leasekit's TryLock is refused, its Lock waits.
	info, err := l.Inspect(ctx, "tenant/acme")
	require.NoError(t, err)
	require.Equal(t, m.Key(), info.Holder.EtcdKey)
	own, err := c.Client().Get(ctx, m.Key())
	require.NoError(t, err)
	require.Equal(t, own.Kvs[0].CreateRevision, info.Holder.Token)
	_, ok, err := l.TryLock(ctx, "tenant/acme", 10*time.Second)
	require.NoError(t, err)
	require.False(t, ok)
	got := goAcquire(t, c.Client(), p, func() (etcdlock.Lock, error) {
		return l.Lock(ctx, "tenant/acme", 10*time.Second)
	})
	select {
	case r := <-got:
		require.FailNowf(t, "leasekit locked while concurrency.Mutex held", "%v", r.err)
	default:
	}
	// A forced unlock breaks etcd's holder too; its session lives on.
	broken, err := l.ForceUnlock(ctx, "tenant/acme", 0)
	require.NoError(t, err)
	require.Equal(t, m.Key(), broken.EtcdKey)
	r := <-got
	require.NoError(t, r.err)
	resp, err := c.Client().Txn(ctx).If(m.IsOwner()).Commit()
	require.NoError(t, err)
	require.False(t, resp.Succeeded, "etcd's holder's guard must fail")
	require.NoError(t, r.lk.Release(ctx))
}
