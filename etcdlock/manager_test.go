package etcdlock_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/leasekit/leasekit/embedtest"
	"github.com/leasekit/leasekit/etcdlock"
	"github.com/leasekit/leasekit/internal/testkit"
)

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

// fn can fence its writes with the hold WithLock and TryWithLock put on
// its context, and no other context carries one.
func TestWithLockFromContext(t *testing.T) {
	c := embedtest.New(t)
	ctx := testkit.Context(t)
	cli := c.Client()
	m := etcdlock.NewManager(newLocker(t, cli))

	_, ok := etcdlock.FromContext(ctx)
	require.False(t, ok)
	guarded := func(lk etcdlock.Lock, v string) bool {
		resp, err := cli.Txn(ctx).If(lk.Guard()).Then(clientv3.OpPut("/fenced", v)).Commit()
		require.NoError(t, err)
		return resp.Succeeded
	}
	var held etcdlock.Lock
	require.NoError(t, m.WithLock(ctx, "job", 2*time.Second, func(fctx context.Context) error {
		lk, ok := etcdlock.FromContext(fctx)
		require.True(t, ok)
		require.Equal(t, "job", lk.Key())
		require.Positive(t, lk.Token())
		require.True(t, guarded(lk, "1"))
		// Nested, the inner hold is found.
		require.NoError(t, m.WithLock(fctx, "other", 2*time.Second, func(ictx context.Context) error {
			inner, ok := etcdlock.FromContext(ictx)
			require.True(t, ok)
			require.Equal(t, "other", inner.Key())
			return nil
		}))
		held = lk
		return nil
	}))
	require.False(t, guarded(held, "late"), "a write guarded by a released hold must be refused")

	ran, err := m.TryWithLock(ctx, "job", 2*time.Second, func(fctx context.Context) error {
		lk, ok := etcdlock.FromContext(fctx)
		require.True(t, ok)
		require.Greater(t, lk.Token(), held.Token())
		require.True(t, guarded(lk, "2"))
		return nil
	})
	require.NoError(t, err)
	require.True(t, ran)
	require.Zero(t, testkit.CountKeys(t, cli, etcdlock.DefaultPrefix))
}

// A WithLock whose lock is lost returns an error on one line: log
// pipelines read a record per line.
func TestWithLockLostErrorIsOneLine(t *testing.T) {
	c := embedtest.New(t)
	ctx := testkit.Context(t)
	cli := c.Client()
	m := etcdlock.NewManager(newLocker(t, cli))
	boom := errors.New("write refused")
	for _, tc := range []struct {
		name string
		ret  func(fctx context.Context) error // what fn returns after the loss
		want []error
	}{
		{"fn returns nil", func(context.Context) error { return nil }, nil},
		{"fn returns the cause", func(fctx context.Context) error { return context.Cause(fctx) }, nil},
		{"fn returns its own error", func(context.Context) error { return boom }, []error{boom}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := m.WithLock(ctx, "tenant/acme", 2*time.Second, func(fctx context.Context) error {
				_, err := cli.Delete(ctx, etcdlock.DefaultPrefix, clientv3.WithPrefix())
				require.NoError(t, err)
				<-fctx.Done()
				require.ErrorIs(t, context.Cause(fctx), etcdlock.ErrLockLost)
				return tc.ret(fctx)
			})
			require.ErrorIs(t, err, etcdlock.ErrLockLost)
			for _, want := range tc.want {
				require.ErrorIs(t, err, want)
			}
			require.NotContains(t, err.Error(), "\n")
			require.Equal(t, 1, strings.Count(err.Error(), "lock lost"), "the loss is reported once: %v", err)
			require.Contains(t, err.Error(), `"tenant/acme"`)
		})
	}
	require.Zero(t, testkit.CountKeys(t, cli, etcdlock.DefaultPrefix))
}
