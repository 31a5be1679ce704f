package etcdlock_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/leasekit/leasekit/embedtest"
	"github.com/leasekit/leasekit/etcdlock"
	"github.com/leasekit/leasekit/internal/testkit"
)

// TestMisuseWithLockPanickingFn: a critical section that panics (and a
// server's recover middleware that survives it) must not leave the lock
// held. runHolding releases only after fn returns, so a panic skips the
// Release; AutoRefresh then keeps the lock alive, blocking every other
// process until this Locker closes, and runHolding's loss-watching
// goroutine leaks.
func TestMisuseWithLockPanickingFn(t *testing.T) {
	c := embedtest.New(t)
	ctx := testkit.Context(t)
	m := etcdlock.NewManager(newLocker(t, c.Client()))
	func() {
		defer func() {
			assert.NotNil(t, recover(), "the panic did not reach the caller")
		}()
		m.WithLock(ctx, "panics", 5*time.Second, func(context.Context) error { panic("boom") })
	}()
	other := newLocker(t, c.Client())
	lk, ok, err := other.TryLock(ctx, "panics", 5*time.Second)
	require.NoError(t, err)
	require.True(t, ok, "the lock is still held after fn panicked")
	lk.Release(ctx)
}

// TestMisuseManagerNilInputs: a nil fn or a Manager of a nil
// DistributedLock is bad input, which must give an error, not a panic
// (and a nil fn must not leave the lock held).
func TestMisuseManagerNilInputs(t *testing.T) {
	c := embedtest.New(t)
	ctx := testkit.Context(t)
	env := &misuseEnv{c: c, cli: c.Client()}
	m := etcdlock.NewManager(newLocker(t, c.Client()))
	err := env.call(t, "WithLock", func(ctx context.Context) error {
		return m.WithLock(ctx, "nil-fn", 5*time.Second, nil)
	})
	assert.Error(t, err, "WithLock with a nil fn")
	assert.Zero(t, testkit.CountKeys(t, c.Client(), etcdlock.DefaultPrefix), "keys WithLock with a nil fn left")
	err = env.call(t, "WithLock", func(ctx context.Context) error {
		return etcdlock.NewManager(nil).WithLock(ctx, "k", time.Second, func(context.Context) error { return nil })
	})
	assert.ErrorIs(t, err, etcdlock.ErrInvalidOption, "NewManager(nil).WithLock")
	_ = ctx
}
