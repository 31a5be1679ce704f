package etcdlock_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/leasekit/leasekit/embedtest"
	"github.com/leasekit/leasekit/etcdlock"
	"github.com/leasekit/leasekit/internal/lease"
	"github.com/leasekit/leasekit/internal/testkit"
)

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

// TestRefreshOfUnknownOutcomeKeepsHolderToldFirst: a Refresh to a shorter
// TTL whose move commits after the caller's ctx ended must leave the hold
// tracking the lease its key is on, so that a holder cut off afterwards is
// told before the next holder gets the lock (and, with a lease of its own,
// the hold must not be deleted by a cleanup of the lease it moved to).
func TestRefreshOfUnknownOutcomeKeepsHolderToldFirst(t *testing.T) {
	for _, tc := range []struct {
		name string
		auto bool
		// refresh is the Refresh's ctx: long enough for the move's write
		// to reach etcd through the proxy's 300ms each way, too short for
		// its answer to come back.
		refresh time.Duration
		to      time.Duration // the TTL moved to
	}{
		// The 2s shared lease exists already: the move is one Txn.
		{"AutoRefresh", true, 450 * time.Millisecond, 2 * time.Second},
		// A Grant, then the Txn. The new lease's TTL counts from the
		// Grant, and the Grant, the move and its settling take 1.5s.
		{"own lease", false, 900 * time.Millisecond, 3 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, p, holder := behindProxy(t)
			ctx := testkit.Context(t)
			if tc.auto {
				_, err := holder.LockWithOptions(ctx, etcdlock.LockOptions{Key: "other", TTL: 2 * time.Second, AutoRefresh: true})
				require.NoError(t, err)
			}
			lk, err := holder.LockWithOptions(ctx, etcdlock.LockOptions{Key: "move", TTL: 6 * time.Second, AutoRefresh: tc.auto})
			require.NoError(t, err)
			before := leaseOf(t, c.Client(), lk)

			p.SetLatency(300 * time.Millisecond)
			rctx, cancel := context.WithTimeout(ctx, tc.refresh)
			err = lk.Refresh(rctx, tc.to)
			cancel()
			t.Logf("Refresh: %v", err)
			h := holderOf(t, c.Client(), lk.Key())
			require.Equal(t, lk.Token(), h.Token, "the hold's key is gone")
			if h.LeaseID == before {
				t.Log("the move did not reach etcd: nothing to check")
			}
			require.NoError(t, toldFirst(t, ctx, c.Client(), p, lk).Release(ctx))
		})
	}
}

// TestRefreshPastTheDeadlineReportsLoss: a Refresh whose answer comes
// after the client-side deadline must not report success for a lock whose
// Done has closed.
func TestRefreshPastTheDeadlineReportsLoss(t *testing.T) {
	for _, tc := range []struct {
		name string
		ttl  time.Duration // the Refresh's
	}{
		{"keepalive", 2 * time.Second},
		{"move", 3 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, p, holder := behindProxy(t)
			ctx := testkit.Context(t)
			lk, err := holder.Lock(ctx, "late", 2*time.Second)
			require.NoError(t, err)
			p.SetLatency(200 * time.Millisecond)
			deadline := lk.ExpiresAt().Add(-lease.Margin(lk.TTL()))
			// A schedule: the call goes out 100ms before the deadline, and
			// its answer comes 300ms after it.
			time.Sleep(time.Until(deadline.Add(-100 * time.Millisecond)))
			err = lk.Refresh(ctx, tc.ttl)
			if err == nil {
				select {
				case <-lk.Done():
					require.FailNowf(t, "Refresh returned nil, but the lock is lost", "%v", lk.Err())
				default:
				}
				require.FailNow(t, "Refresh past the deadline succeeded")
			}
			require.ErrorIs(t, err, etcdlock.ErrLockLost)
			require.ErrorIs(t, err, etcdlock.ErrNotHeld)
			<-lk.Done()
			require.ErrorIs(t, lk.Err(), etcdlock.ErrLockLost)
		})
	}
}

// TestRefreshToTheGrantedTTLIsAKeepalive: with etcd's 2s minimum TTL, a
// Refresh to a TTL etcd would raise to the one the hold has is a
// keepalive: the hold stays on its lease.
func TestRefreshToTheGrantedTTLIsAKeepalive(t *testing.T) {
	// An election timeout of 700ms makes etcd's minimum TTL 2s, as it is
	// with etcd's defaults.
	c := embedtest.New(t, embedtest.WithElection(70*time.Millisecond, 700*time.Millisecond))
	ctx := testkit.Context(t)
	l := newLocker(t, c.Client())
	for _, tc := range []struct {
		name    string
		auto    bool
		ttl     time.Duration // asked for at Lock
		refresh []time.Duration
	}{
		{"own lease granted 2s", false, 2 * time.Second, []time.Duration{time.Second, 1500 * time.Millisecond, 2 * time.Second}},
		{"own lease raised to 2s", false, time.Second, []time.Duration{time.Second, 2 * time.Second, 300 * time.Millisecond}},
		{"AutoRefresh granted 2s", true, 2 * time.Second, []time.Duration{time.Second, 2 * time.Second}},
		{"AutoRefresh raised to 2s", true, time.Second, []time.Duration{2 * time.Second, time.Second}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lk, err := l.LockWithOptions(ctx, etcdlock.LockOptions{Key: tc.name, TTL: tc.ttl, AutoRefresh: tc.auto})
			require.NoError(t, err)
			require.Equal(t, 2*time.Second, lk.TTL())
			id := leaseOf(t, c.Client(), lk)
			for _, ttl := range tc.refresh {
				require.NoError(t, lk.Refresh(ctx, ttl))
				require.Equal(t, 2*time.Second, lk.TTL(), "Refresh(%v)", ttl)
				require.Equal(t, id, leaseOf(t, c.Client(), lk), "Refresh(%v) moved the hold to another lease", ttl)
			}
			require.NoError(t, lk.Refresh(ctx, 3*time.Second))
			require.Equal(t, 3*time.Second, lk.TTL())
			require.NotEqual(t, id, leaseOf(t, c.Client(), lk))
			require.NoError(t, lk.Release(ctx))
		})
	}
}
