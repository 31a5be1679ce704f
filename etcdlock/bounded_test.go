package etcdlock_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/leasekit/leasekit/etcdlock"
	"github.com/leasekit/leasekit/internal/etcderr"
	"github.com/leasekit/leasekit/internal/testkit"
)

// within runs f and fails the test unless it returns within d: for calls
// that must not wait behind others, whose own bound is far below d.
func within(t *testing.T, d time.Duration, what string, f func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		require.FailNowf(t, "a call waited behind another", "%s still blocked after %v", what, d)
		return nil
	}
}

// TestNothingWaitsBehindARefresh: a Refresh in flight on a cut network,
// with a ctx that never ends, must not block the hold's other methods or
// the Locker's Close; it ends when the hold is lost.
func TestNothingWaitsBehindARefresh(t *testing.T) {
	for _, tc := range []struct {
		name string
		auto bool
		to   time.Duration
	}{
		{"keepalive", false, 2 * time.Second},
		{"move", false, 5 * time.Second},
		{"move, AutoRefresh", true, 5 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, p, holder := behindProxy(t)
			ctx := testkit.Context(t)
			lk, err := holder.LockWithOptions(ctx, etcdlock.LockOptions{Key: "k", TTL: 2 * time.Second, AutoRefresh: tc.auto})
			require.NoError(t, err)
			p.Cut()
			refreshed := make(chan error, 1)
			go func() { refreshed <- lk.Refresh(context.Background(), tc.to) }()
			<-lk.Done()
			// The pattern every user writes.
			err = within(t, time.Second, "Err after Done", lk.Err)
			require.ErrorIs(t, err, etcdlock.ErrLockLost)
			within(t, time.Second, "TTL and ExpiresAt", func() error {
				lk.TTL()
				lk.ExpiresAt()
				return nil
			})
			ok, err := lk.IsValid(ctx)
			require.NoError(t, err)
			require.False(t, ok)
			within(t, time.Second+300*time.Millisecond, "Release(300ms)", func() error {
				rctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
				defer cancel()
				return lk.Release(rctx)
			})
			within(t, etcderr.CleanupTimeout+time.Second, "Locker.Close", holder.Close)
			err = within(t, time.Second, "the Refresh", func() error { return <-refreshed })
			require.ErrorIs(t, err, etcdlock.ErrNotHeld)
		})
	}
}

// TestCloseIsBounded: with etcd unreachable and calls in flight whose
// contexts never end (a Refresh moving a hold, a Release, a grant of a
// shared lease, a wait, an Inspect), Close returns within about
// etcderr.CleanupTimeout, and so does every call.
func TestCloseIsBounded(t *testing.T) {
	_, p, l := behindProxy(t)
	ctx := testkit.Context(t)
	lock := func(name string, ttl time.Duration, auto bool) etcdlock.Lock {
		lk, err := l.LockWithOptions(ctx, etcdlock.LockOptions{Key: name, TTL: ttl, AutoRefresh: auto})
		require.NoError(t, err)
		return lk
	}
	moving, releasing, kept := lock("moving", 5*time.Second, false), lock("releasing", 5*time.Second, false), lock("kept", 5*time.Second, true)
	clock := lock("clock", time.Second, false)
	p.Cut()
	bg := context.Background()
	calls := map[string]func() error{
		"Refresh to another TTL": func() error { return moving.Refresh(bg, 7*time.Second) },
		"Release":                func() error { return releasing.Release(bg) },
		"Lock granting a shared lease": func() error {
			_, err := l.LockWithOptions(bg, etcdlock.LockOptions{Key: "new", TTL: 3 * time.Second, AutoRefresh: true})
			return err
		},
		"Lock waiting": func() error {
			_, err := l.LockWithOptions(bg, etcdlock.LockOptions{Key: "kept", TTL: 5 * time.Second, AutoRefresh: true})
			return err
		},
		"Inspect": func() error { _, err := l.Inspect(bg, "kept"); return err },
	}
	done := make(chan string, len(calls))
	for name, call := range calls {
		go func() {
			err := call()
			t.Logf("%s: %v", name, err)
			done <- name
		}()
	}
	// By the time the short hold's deadline passes, every call is in
	// flight.
	<-clock.Done()
	start := time.Now()
	within(t, etcderr.CleanupTimeout+time.Second, "Locker.Close", l.Close)
	t.Logf("Close took %v", time.Since(start))
	for range calls {
		within(t, time.Second, "calls in flight", func() error { t.Logf("%s returned", <-done); return nil })
	}
	<-kept.Done()
}

// TestGrantBlocksNoOtherCall: while an AutoRefresh Lock with a long ctx
// waits for a lease grant etcd does not answer, other calls on the same
// Locker wait only as long as their own ctx.
func TestGrantBlocksNoOtherCall(t *testing.T) {
	_, p, l := behindProxy(t)
	ctx := testkit.Context(t)
	p.Cut()
	lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	long := make(chan error, 1)
	go func() {
		_, err := l.LockWithOptions(lctx, etcdlock.LockOptions{Key: "long", TTL: 3 * time.Second, AutoRefresh: true})
		long <- err
	}()
	short := func(f func(ctx context.Context) error) func() error {
		return func() error {
			sctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
			defer cancel()
			return f(sctx)
		}
	}
	// Each call waits out its 300ms: after the first, the long Lock is
	// surely granting.
	for range 3 {
		for what, f := range map[string]func(ctx context.Context) error{
			"Lock, same TTL": func(ctx context.Context) error {
				_, err := l.LockWithOptions(ctx, etcdlock.LockOptions{Key: "short", TTL: 3 * time.Second, AutoRefresh: true})
				return err
			},
			"Lock, other TTL": func(ctx context.Context) error {
				_, err := l.LockWithOptions(ctx, etcdlock.LockOptions{Key: "short", TTL: 4 * time.Second, AutoRefresh: true})
				return err
			},
			"Lock, own lease": func(ctx context.Context) error {
				_, err := l.Lock(ctx, "short", 3*time.Second)
				return err
			},
			"Inspect": func(ctx context.Context) error { _, err := l.Inspect(ctx, "short"); return err },
		} {
			err := within(t, 300*time.Millisecond+time.Second, what, short(f))
			require.ErrorIs(t, err, context.DeadlineExceeded, what)
		}
	}
	cancel()
	require.ErrorIs(t, <-long, context.Canceled)
}
