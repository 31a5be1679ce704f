package etcdlock_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/leasekit/leasekit/embedtest"
	"github.com/leasekit/leasekit/etcdlock"
	"github.com/leasekit/leasekit/internal/testkit"
)

// The tests in this file each fail when one safety mechanism is weakened;
// docs/safety.md lists which.

// TestStaleGuardOfAReusedSlot: a Locker reuses its keys, one per slot, so
// the guard of a hold that was lost and released must stay false once the
// same Locker takes the name again on the same key. A guard of "the key
// exists" would be true again.
func TestStaleGuardOfAReusedSlot(t *testing.T) {
	c := embedtest.New(t)
	ctx := testkit.Context(t)
	cli := c.Client()
	for _, tc := range []struct {
		how  string
		auto bool
	}{
		{"key deleted", false}, {"key deleted", true},
		{"lease revoked", false}, {"lease revoked", true},
	} {
		t.Run(fmt.Sprintf("%s, AutoRefresh=%v", tc.how, tc.auto), func(t *testing.T) {
			l := newLocker(t, cli)
			opts := etcdlock.LockOptions{Key: "reuse", TTL: 5 * time.Second, AutoRefresh: tc.auto}
			old, err := l.LockWithOptions(ctx, opts)
			require.NoError(t, err)
			h := holderOf(t, cli, "reuse")
			if tc.how == "key deleted" {
				_, err = cli.Delete(ctx, h.EtcdKey)
			} else {
				_, err = cli.Revoke(ctx, clientv3.LeaseID(h.LeaseID))
			}
			require.NoError(t, err)
			<-old.Done()
			require.ErrorIs(t, old.Release(ctx), etcdlock.ErrNotHeld)

			if tc.auto && tc.how == "lease revoked" {
				// Another TTL, so another shared lease: the Locker may not
				// know yet that the first one is gone.
				opts.TTL = 6 * time.Second
			}
			cur, err := l.LockWithOptions(ctx, opts)
			require.NoError(t, err)
			require.Equal(t, h.EtcdKey, holderOf(t, cli, "reuse").EtcdKey, "the new hold must reuse the slot's key")
			require.Greater(t, cur.Token(), old.Token())

			resp, err := cli.Txn(ctx).If(old.Guard()).Commit()
			require.NoError(t, err)
			require.False(t, resp.Succeeded, "the lost hold's guard holds on the reused key")
			resp, err = cli.Txn(ctx).If(cur.Guard()).Commit()
			require.NoError(t, err)
			require.True(t, resp.Succeeded)
			require.NoError(t, cur.Release(ctx))
		})
	}
}

// TestDeadlineCountsFromTheSend: the client-side deadline of a lease runs
// from when the last keepalive was sent, not from when its answer came.
// With 300ms each way, etcd can expire the lease no earlier than 300ms
// after the send plus the TTL; counted from the answer, the holder would
// be told 300ms minus the margin after that, when the next holder may be
// in already.
func TestDeadlineCountsFromTheSend(t *testing.T) {
	c, p, holder := behindProxy(t)
	ctx := testkit.Context(t)
	const latency = 300 * time.Millisecond
	lk, err := holder.Lock(ctx, "send", 2*time.Second)
	require.NoError(t, err)
	p.SetLatency(latency)
	sent := time.Now()
	require.NoError(t, lk.Refresh(ctx, lk.TTL()))
	// The earliest etcd could expire the lease: the keepalive reached it
	// no earlier than latency after it was sent.
	earliest := sent.Add(latency + lk.TTL())
	toldAt := make(chan time.Time, 1)
	go func() { <-lk.Done(); toldAt <- time.Now() }()
	require.NoError(t, toldFirst(t, ctx, c.Client(), p, lk).Release(ctx))
	told := <-toldAt
	require.True(t, told.Before(earliest), "told %v after etcd could expire the lease", told.Sub(earliest))
}
