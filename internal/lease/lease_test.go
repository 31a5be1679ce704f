package lease_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"go.uber.org/zap"

	"github.com/leasekit/leasekit/embedtest"
	"github.com/leasekit/leasekit/internal/lease"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, embedtest.LeakOptions()...) }

func TestGrantReportsWhatEtcdGranted(t *testing.T) {
	c := embedtest.New(t)
	ctx := context.Background()
	l, err := lease.Grant(ctx, c.Client(), 100*time.Millisecond, false, zap.NewNop())
	require.NoError(t, err)
	defer l.Close()
	require.Equal(t, time.Second, l.TTL(), "TTLs round up to whole seconds, and embedtest's minimum is 1s")
	// The client-side deadline comes a margin before etcd could expire it.
	require.Equal(t, lease.Margin(time.Second), l.ExpiresAt().Sub(l.Deadline()))
	require.True(t, l.Deadline().Before(time.Now().Add(time.Second)))
}

func TestDeadlineEndsAnUnrenewedLeaseBeforeEtcd(t *testing.T) {
	c := embedtest.New(t)
	ctx := context.Background()
	l, err := lease.Grant(ctx, c.Client(), time.Second, false, zap.NewNop())
	require.NoError(t, err)
	defer l.Close()
	<-l.Done()
	require.ErrorIs(t, l.Err(), lease.ErrExpired)
	require.False(t, time.Now().Before(l.Deadline()))
}

func TestKeepAliveOutlivesTTL(t *testing.T) {
	c := embedtest.New(t)
	ctx := context.Background()
	for _, keep := range []bool{true, false} {
		l, err := lease.Grant(ctx, c.Client(), time.Second, keep, zap.NewNop())
		require.NoError(t, err)
		stop := func() {}
		if !keep {
			stop = l.KeepAliveWhile()
		}
		first := l.Deadline()
		// Past the time etcd would have expired an unrenewed lease (a
		// schedule, not a wait for a condition), it must still be alive.
		select {
		case <-l.Done():
			t.Fatalf("keepalive=%v: lease lost: %v", keep, l.Err())
		case <-time.After(time.Until(first.Add(600 * time.Millisecond))):
		}
		require.True(t, l.Alive())
		require.True(t, l.Deadline().After(first), "keepalives move the deadline on")
		stop()
		require.NoError(t, l.Revoke(ctx))
		require.ErrorIs(t, l.Err(), lease.ErrRevoked)
		ttl, err := c.Client().TimeToLive(ctx, l.ID())
		require.NoError(t, err)
		require.EqualValues(t, -1, ttl.TTL, "revoked on etcd too")
	}
}

func TestGoneAndKeepAliveOfARevokedLease(t *testing.T) {
	c := embedtest.New(t)
	ctx := context.Background()
	l, err := lease.Grant(ctx, c.Client(), 5*time.Second, false, zap.NewNop())
	require.NoError(t, err)
	defer l.Close()
	_, err = c.Client().Revoke(ctx, l.ID())
	require.NoError(t, err)
	require.ErrorIs(t, l.KeepAliveOnce(ctx), lease.ErrNotFound)
	<-l.Done()
	require.ErrorIs(t, l.Err(), lease.ErrNotFound)
}

// Revoke reports what etcd did, whatever ended the lease before: a lease
// lost to its deadline was revoked by then (or expired by etcd), and one
// revoked from outside is not found. Err keeps the loss.
func TestRevokeReportsWhatEtcdDid(t *testing.T) {
	c := embedtest.New(t)
	ctx := context.Background()
	lapsed, err := lease.Grant(ctx, c.Client(), time.Second, false, zap.NewNop())
	require.NoError(t, err)
	<-lapsed.Done()
	if err := lapsed.Revoke(ctx); err != nil {
		require.ErrorIs(t, err, lease.ErrNotFound, "etcd may have expired it before the revoke")
	}
	require.ErrorIs(t, lapsed.Err(), lease.ErrExpired)
	ttl, err := c.Client().TimeToLive(ctx, lapsed.ID())
	require.NoError(t, err)
	require.EqualValues(t, -1, ttl.TTL, "gone from etcd")

	outside, err := lease.Grant(ctx, c.Client(), 5*time.Second, true, zap.NewNop())
	require.NoError(t, err)
	_, err = c.Client().Revoke(ctx, outside.ID())
	require.NoError(t, err)
	require.ErrorIs(t, outside.RevokeDetached(), lease.ErrNotFound)
}
