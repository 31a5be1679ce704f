package etcdlock_test

import (
	"context"
	"errors"
	"testing"
	"time"

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
			if recover() == nil {
				t.Error("the panic did not reach the caller")
			}
		}()
		m.WithLock(ctx, "panics", 5*time.Second, func(context.Context) error { panic("boom") })
	}()
	other := newLocker(t, c.Client())
	lk, ok, err := other.TryLock(ctx, "panics", 5*time.Second)
	if err != nil || !ok {
		t.Fatalf("the lock is still held after fn panicked: %v %v", ok, err)
	}
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
	if err := env.call(t, "WithLock", func(ctx context.Context) error {
		return m.WithLock(ctx, "nil-fn", 5*time.Second, nil)
	}); err == nil {
		t.Error("WithLock with a nil fn: no error")
	}
	if n := testkit.CountKeys(t, c.Client(), etcdlock.DefaultPrefix); n != 0 {
		t.Errorf("WithLock with a nil fn left %d keys", n)
	}
	err := env.call(t, "WithLock", func(ctx context.Context) error {
		return etcdlock.NewManager(nil).WithLock(ctx, "k", time.Second, func(context.Context) error { return nil })
	})
	if !errors.Is(err, etcdlock.ErrInvalidOption) {
		t.Errorf("NewManager(nil).WithLock: want ErrInvalidOption, got %v", err)
	}
	_ = ctx
}
