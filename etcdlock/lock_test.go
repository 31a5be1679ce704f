package etcdlock_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/leasekit/leasekit/embedtest"
	"github.com/leasekit/leasekit/etcdlock"
	"github.com/leasekit/leasekit/internal/testkit"
)

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
	waiting := goAcquire(t, c.Client(), etcdlock.DefaultPrefix, func() (etcdlock.Lock, error) {
		return l.Lock(cctx, "busy", 5*time.Second)
	})
	cancel()
	require.ErrorIs(t, testkit.Recv(t, waiting).err, context.Canceled)
	require.Equal(t, 1, testkit.CountKeys(t, c.Client(), etcdlock.DefaultPrefix))
	require.NoError(t, held.Release(ctx))
	require.Zero(t, testkit.CountKeys(t, c.Client(), etcdlock.DefaultPrefix))
}

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
	waiting := goAcquire(t, c.Client(), etcdlock.DefaultPrefix, func() (etcdlock.Lock, error) {
		return other.Lock(ctx, "x", 5*time.Second)
	})
	require.NoError(t, other.Close())
	require.ErrorIs(t, testkit.Recv(t, waiting).err, etcdlock.ErrClosed)

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
