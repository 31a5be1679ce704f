package etcdlock_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
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

func TestNamesDoNotCollide(t *testing.T) {
	c := embedtest.New(t)
	ctx := testkit.Context(t)
	l := newLocker(t, c.Client())
	names := []string{"a", "a/", "a/b", "a%2Fb", "a%b", "/", "ü", "a b", "a\x00b"}
	var held []etcdlock.Lock
	for _, name := range names {
		lk, ok, err := l.TryLock(ctx, name, 5*time.Second)
		require.NoError(t, err, name)
		require.True(t, ok, "%q must be free: it collides with another name", name)
		held = append(held, lk)
	}
	for i, name := range names {
		info, err := l.Inspect(ctx, name)
		require.NoError(t, err)
		require.NotNil(t, info.Holder)
		require.Equal(t, held[i].Token(), info.Holder.Token, name)
		require.Empty(t, info.Waiters)
		require.NoError(t, held[i].Release(ctx))
	}
	require.Zero(t, testkit.CountKeys(t, c.Client(), etcdlock.DefaultPrefix))
}

func TestBadInput(t *testing.T) {
	c := embedtest.New(t)
	ctx := testkit.Context(t)
	l := newLocker(t, c.Client())
	huge := map[string]string{"blob": strings.Repeat("x", etcdlock.MaxMetadataBytes)}
	for _, tc := range []struct {
		name string
		opts etcdlock.LockOptions
		want error
	}{
		{"empty key", etcdlock.LockOptions{Key: "", TTL: time.Second}, etcdlock.ErrInvalidKey},
		{"key too long", etcdlock.LockOptions{Key: strings.Repeat("k", etcdlock.MaxNameLen+1), TTL: time.Second}, etcdlock.ErrInvalidKey},
		{"invalid UTF-8", etcdlock.LockOptions{Key: "\xff\xfe", TTL: time.Second}, etcdlock.ErrInvalidKey},
		{"zero TTL", etcdlock.LockOptions{Key: "k"}, etcdlock.ErrInvalidTTL},
		{"negative TTL", etcdlock.LockOptions{Key: "k", TTL: -time.Second}, etcdlock.ErrInvalidTTL},
		{"TTL above etcd's maximum", etcdlock.LockOptions{Key: "k", TTL: etcdlock.MaxTTL + time.Second}, etcdlock.ErrInvalidTTL},
		{"negative RefreshTTL", etcdlock.LockOptions{Key: "k", TTL: time.Second, AutoRefresh: true, RefreshTTL: -1}, etcdlock.ErrInvalidTTL},
		{"negative Timeout", etcdlock.LockOptions{Key: "k", TTL: time.Second, Timeout: -1}, etcdlock.ErrInvalidTTL},
		{"huge metadata", etcdlock.LockOptions{Key: "k", TTL: time.Second, Metadata: huge}, etcdlock.ErrInvalidMetadata},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lk, err := l.LockWithOptions(ctx, tc.opts)
			require.ErrorIs(t, err, tc.want)
			require.Nil(t, lk)
			_, ok, err := l.TryLockWithOptions(ctx, tc.opts)
			require.False(t, ok)
			require.ErrorIs(t, err, tc.want)
		})
	}
	t.Run("cancelled ctx", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		_, err := l.Lock(cctx, "k", time.Second)
		require.ErrorIs(t, err, context.Canceled)
	})
	t.Run("nil client", func(t *testing.T) {
		_, err := etcdlock.New(nil)
		require.ErrorIs(t, err, etcdlock.ErrInvalidOption)
	})
	t.Run("TTL below etcd's minimum is raised and reported", func(t *testing.T) {
		lk, err := l.Lock(ctx, "short", 100*time.Millisecond)
		require.NoError(t, err)
		require.Equal(t, time.Second, lk.TTL(), "embedtest's minimum TTL is 1s; 100ms rounds up to it")
		require.NoError(t, lk.Release(ctx))
	})
	require.Zero(t, testkit.CountKeys(t, c.Client(), etcdlock.DefaultPrefix))
}

func TestUseAfterClose(t *testing.T) {
	c := embedtest.New(t)
	ctx := testkit.Context(t)
	l, err := etcdlock.New(c.Client())
	require.NoError(t, err)
	held, err := l.LockWithOptions(ctx, etcdlock.LockOptions{Key: "x", TTL: 5 * time.Second, AutoRefresh: true})
	require.NoError(t, err)
	own, err := l.Lock(ctx, "y", 5*time.Second)
	require.NoError(t, err)

	// A waiter in flight is ended by Close.
	other, err := etcdlock.New(c.Client())
	require.NoError(t, err)
	waitErr := make(chan error, 1)
	go func() {
		_, err := other.Lock(ctx, "x", 5*time.Second)
		waitErr <- err
	}()
	testkit.AwaitKeys(t, c.Client(), etcdlock.DefaultPrefix, 3)
	require.NoError(t, other.Close())
	require.ErrorIs(t, <-waitErr, etcdlock.ErrClosed)

	// Close is idempotent: of two at once, each returns nil, and only once
	// the holds are released.
	closes := make(chan error, 2)
	for range 2 {
		go func() {
			err := l.Close()
			for _, lk := range []etcdlock.Lock{held, own} {
				select {
				case <-lk.Done():
				default:
					err = fmt.Errorf("Close returned %v with %q still held", err, lk.Key())
				}
			}
			closes <- err
		}()
	}
	require.NoError(t, <-closes)
	require.NoError(t, <-closes)
	require.ErrorIs(t, held.Release(ctx), etcdlock.ErrNotHeld)
	require.NoError(t, l.Close(), "Close is idempotent: a second call returns nil")
	_, err = l.Lock(ctx, "x", time.Second)
	require.ErrorIs(t, err, etcdlock.ErrClosed)
	require.Zero(t, testkit.CountKeys(t, c.Client(), etcdlock.DefaultPrefix), "Close must leave no keys")
}

func TestAutoRefreshOutlivesTTL(t *testing.T) {
	c := embedtest.New(t)
	ctx := testkit.Context(t)
	l := newLocker(t, c.Client())
	lk, err := l.LockWithOptions(ctx, etcdlock.LockOptions{Key: "long", TTL: time.Second, AutoRefresh: true})
	require.NoError(t, err)
	first := lk.ExpiresAt()
	// Past the time etcd would have expired an unrenewed lease (a schedule,
	// not a wait for a condition), the lock must still be held.
	select {
	case <-lk.Done():
		require.FailNowf(t, "lock lost", "%v", lk.Err())
	case <-time.After(time.Until(first.Add(500 * time.Millisecond))):
	}
	require.True(t, lk.ExpiresAt().After(first), "keepalives move the expiry on")
	ok, err := lk.IsValid(ctx)
	require.NoError(t, err)
	require.True(t, ok)
	require.NoError(t, lk.Release(ctx))
}

func TestRefreshKeepsTokenAndChangesTTL(t *testing.T) {
	c := embedtest.New(t)
	ctx := testkit.Context(t)
	l := newLocker(t, c.Client())
	for _, auto := range []bool{false, true} {
		lk, err := l.LockWithOptions(ctx, etcdlock.LockOptions{Key: "r", TTL: 2 * time.Second, AutoRefresh: auto})
		require.NoError(t, err)
		token := lk.Token()
		require.NoError(t, lk.Refresh(ctx, 2*time.Second))
		require.NoError(t, lk.Refresh(ctx, 7*time.Second))
		require.Equal(t, 7*time.Second, lk.TTL())
		require.Equal(t, token, lk.Token())
		ok, err := lk.IsValid(ctx)
		require.NoError(t, err)
		require.True(t, ok)
		require.ErrorIs(t, lk.Refresh(ctx, 0), etcdlock.ErrInvalidTTL)
		require.NoError(t, lk.Release(ctx))
	}
	require.Zero(t, testkit.CountKeys(t, c.Client(), etcdlock.DefaultPrefix))
}

// TestLossIsNoticedBeforeOthersAcquire covers the ways a hold can be lost:
// its TTL running out unrefreshed, its lease revoked and its key deleted by
// someone else. Done must close, Err must wrap ErrLockLost, and the next
// holder must not get the lock before the loser's Done closed.
func TestLossIsNoticedBeforeOthersAcquire(t *testing.T) {
	c := embedtest.New(t)
	ctx := testkit.Context(t)
	for _, tc := range []struct {
		name string
		auto bool
		kill func(t *testing.T, cli *clientv3.Client, lk etcdlock.Lock)
	}{
		{"TTL runs out", false, func(*testing.T, *clientv3.Client, etcdlock.Lock) {}},
		{"lease revoked", true, func(t *testing.T, cli *clientv3.Client, lk etcdlock.Lock) {
			_, err := cli.Revoke(ctx, clientv3.LeaseID(holderOf(t, cli, lk.Key()).LeaseID))
			require.NoError(t, err)
		}},
		{"key deleted", true, func(t *testing.T, cli *clientv3.Client, lk etcdlock.Lock) {
			_, err := cli.Delete(ctx, holderOf(t, cli, lk.Key()).EtcdKey)
			require.NoError(t, err)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			holderCli, err := c.NewClient()
			require.NoError(t, err)
			holder := newLocker(t, holderCli)
			waiter := newLocker(t, c.Client())
			lk, err := holder.LockWithOptions(ctx, etcdlock.LockOptions{Key: "loss", TTL: time.Second, AutoRefresh: tc.auto})
			require.NoError(t, err)

			var mu sync.Mutex
			var events []string
			record := func(s string) { mu.Lock(); events = append(events, s); mu.Unlock() }
			go func() { <-lk.Done(); record("holder told") }()
			got := make(chan etcdlock.Lock, 1)
			go func() {
				next, err := waiter.Lock(ctx, "loss", 5*time.Second)
				if assert.NoError(t, err) {
					record("next acquired")
				}
				got <- next
			}()
			tc.kill(t, c.Client(), lk)
			next := <-got
			require.NotNil(t, next)
			<-lk.Done()
			require.ErrorIs(t, lk.Err(), etcdlock.ErrLockLost)
			require.ErrorIs(t, lk.Release(ctx), etcdlock.ErrNotHeld)
			require.Greater(t, next.Token(), lk.Token())
			require.NoError(t, next.Release(ctx))
			if tc.name == "TTL runs out" {
				// Only expiry is the holder's own doing, so only there can
				// it be told first; revokes and deletes by others are
				// seen after the fact.
				mu.Lock()
				require.Equal(t, []string{"holder told", "next acquired"}, events)
				mu.Unlock()
			}
		})
	}
}

// holderOf returns the holder of the lock name, as Inspect reports it.
func holderOf(t *testing.T, cli *clientv3.Client, name string) *etcdlock.Entry {
	t.Helper()
	l, err := etcdlock.New(cli)
	require.NoError(t, err)
	defer l.Close()
	info, err := l.Inspect(context.Background(), name)
	require.NoError(t, err)
	require.NotNil(t, info.Holder)
	return info.Holder
}

func TestWaiterWhoseKeyVanishesStops(t *testing.T) {
	c := embedtest.New(t)
	ctx := testkit.Context(t)
	l := newLocker(t, c.Client())
	held, err := l.Lock(ctx, "vanish", 5*time.Second)
	require.NoError(t, err)
	waitErr := make(chan error, 1)
	go func() {
		_, err := l.Lock(ctx, "vanish", 5*time.Second)
		waitErr <- err
	}()
	testkit.AwaitKeys(t, c.Client(), etcdlock.DefaultPrefix, 2)
	info, err := l.Inspect(ctx, "vanish")
	require.NoError(t, err)
	require.Len(t, info.Waiters, 1)
	_, err = c.Client().Revoke(ctx, clientv3.LeaseID(info.Waiters[0].LeaseID))
	require.NoError(t, err)
	err = <-waitErr
	require.ErrorIs(t, err, etcdlock.ErrLockLost)
	require.NoError(t, held.Release(ctx))
	require.Zero(t, testkit.CountKeys(t, c.Client(), etcdlock.DefaultPrefix))
}

func TestManager(t *testing.T) {
	c := embedtest.New(t)
	ctx := testkit.Context(t)
	l := newLocker(t, c.Client())
	m := etcdlock.NewManager(l)

	ran := false
	require.NoError(t, m.WithLock(ctx, "job", 2*time.Second, func(ctx context.Context) error {
		ran = true
		return nil
	}))
	require.True(t, ran)

	boom := errors.New("boom")
	require.ErrorIs(t, m.WithLock(ctx, "job", 2*time.Second, func(context.Context) error { return boom }), boom)

	t.Run("fn's ctx ends when the lock is lost", func(t *testing.T) {
		err := m.WithLock(ctx, "job", 2*time.Second, func(fctx context.Context) error {
			_, err := c.Client().Delete(ctx, etcdlock.DefaultPrefix, clientv3.WithPrefix())
			require.NoError(t, err)
			<-fctx.Done()
			require.ErrorIs(t, context.Cause(fctx), etcdlock.ErrLockLost)
			return nil
		})
		require.ErrorIs(t, err, etcdlock.ErrLockLost)
	})

	t.Run("TryWithLock", func(t *testing.T) {
		lk, err := m.AcquireLock(ctx, "busy", 2*time.Second)
		require.NoError(t, err)
		same, err := m.AcquireLock(ctx, "busy", 2*time.Second)
		require.NoError(t, err)
		require.Equal(t, lk.Token(), same.Token())
		ran, err := m.TryWithLock(ctx, "busy", 2*time.Second, func(context.Context) error { return nil })
		require.NoError(t, err)
		require.False(t, ran)
		require.NoError(t, m.ReleaseLock(ctx, "busy"))
		require.ErrorIs(t, m.ReleaseLock(ctx, "busy"), etcdlock.ErrNotHeld)
		ran, err = m.TryWithLock(ctx, "busy", 2*time.Second, func(context.Context) error { return nil })
		require.NoError(t, err)
		require.True(t, ran)
	})

	_, err := m.AcquireLock(ctx, "a", 2*time.Second)
	require.NoError(t, err)
	_, err = m.AcquireLock(ctx, "b", 2*time.Second)
	require.NoError(t, err)
	require.NoError(t, m.ReleaseAll(ctx))
	require.Zero(t, testkit.CountKeys(t, c.Client(), etcdlock.DefaultPrefix))
}
