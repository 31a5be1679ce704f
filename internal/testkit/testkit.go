// Package testkit holds the helpers leasekit's tests share, as zap's
// internal/ztest does for zap: one test context, one watch-based way to
// wait for keys in etcd, clients for fault tests (behind a proxy, of some
// members only), and the checks every Prometheus adapter passes.
// Auth fixtures live on embedtest.Cluster (EnableAuth, AddUser), since
// users' tests want them too.
//
// Nothing here sleeps to wait for a condition: waits are woken by etcd
// watch events and bounded by Timeout.
package testkit

import (
	"context"
	"testing"
	"time"

	"github.com/leasekit/leasekit/internal/etcderr"
)

// Timeout bounds every wait in a test, so that a bug fails the test
// instead of hanging it.
const Timeout = 60 * time.Second

// Context returns a context for the calls of a test: it ends when tb
// ends, or after Timeout. Cleanups run after it ended, so each gets a
// bounded context of its own (Cleanup), as the library's cleanups do.
func Context(tb testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(tb.Context(), Timeout)
	tb.Cleanup(cancel)
	return ctx
}

// CleanupTimeout bounds a cleanup's calls to etcd.
const CleanupTimeout = 10 * time.Second

// Cleanup registers f to run when tb ends, with a context of its own
// bounded by CleanupTimeout.
func Cleanup(tb testing.TB, f func(ctx context.Context)) {
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), CleanupTimeout)
		defer cancel()
		f(ctx)
	})
}

// Recv returns the next value from ch, and fails tb if none comes within
// Timeout or ch is closed.
func Recv[T any](tb testing.TB, ch <-chan T) T {
	tb.Helper()
	select {
	case v, ok := <-ch:
		if !ok {
			tb.Fatal("testkit: channel closed")
		}
		return v
	case <-time.After(Timeout):
		tb.Fatalf("testkit: no value within %v", Timeout)
	}
	var zero T
	return zero
}

// Retry calls f until it returns nil, giving each attempt a second, and
// returns nil, or f's last error once ctx ends. It is for calls that fail
// until a client reconnects after a fault (a healed proxy, a restarted
// member), not for waiting on a condition: wait on an event for that
// (WaitKeys, a channel).
func Retry(ctx context.Context, f func(ctx context.Context) error) error {
	b := etcderr.Backoff{Min: 10 * time.Millisecond, Max: 100 * time.Millisecond}
	for {
		attempt, cancel := context.WithTimeout(ctx, time.Second)
		err := f(attempt)
		cancel()
		if err == nil {
			return nil
		}
		if b.Wait(ctx) != nil {
			return err
		}
	}
}
