package etcdlock_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/leasekit/leasekit/embedtest"
	"github.com/leasekit/leasekit/etcdlock"
	"github.com/leasekit/leasekit/internal/testkit"
)

// A hold ends without Release when its TTL runs out, its lease is
// revoked, its key is deleted, or its holder is cut off from etcd. These
// tests check that the holder is told (before the next holder acquires,
// where the loss is its own doing) and that nothing done with the lost
// hold touches the next one. TestDeadlineCountsFromTheSend and
// TestStaleGuardOfAReusedSlot each fail when one safety mechanism is
// weakened; docs/safety.md lists which.

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
			lk, err := holder.LockWithOptions(ctx, etcdlock.LockOptions{Key: "loss", TTL: time.Second, AutoRefresh: tc.auto})
			require.NoError(t, err)

			next, order := takeOver(t, ctx, c.Client(), lk, func() { tc.kill(t, c.Client(), lk) })
			require.ErrorIs(t, lk.Err(), etcdlock.ErrLockLost)
			require.ErrorIs(t, lk.Release(ctx), etcdlock.ErrNotHeld)
			require.Greater(t, next.Token(), lk.Token())
			require.NoError(t, next.Release(ctx))
			if tc.name == "TTL runs out" {
				// Only expiry is the holder's own doing, so only there can
				// it be told first; revokes and deletes by others are
				// seen after the fact.
				require.Equal(t, []string{"holder told", "next acquired"}, order)
			}
		})
	}
}

// TestCutOffHolderIsToldFirst cuts a holder off from etcd with a proxy
// that drops its traffic. The holder must be told it lost the lock before
// the waiter gets it, and its late guarded write must fail once it can
// reach etcd again, while the new holder's succeeds.
func TestCutOffHolderIsToldFirst(t *testing.T) {
	for _, auto := range []bool{true, false} {
		t.Run(fmt.Sprintf("AutoRefresh=%v", auto), func(t *testing.T) {
			c := embedtest.New(t)
			ctx := testkit.Context(t)
			p, cut := testkit.Proxied(t, c, 0)
			holder := newLocker(t, cut)

			// 2s, not the 1s minimum: keepalives on a loaded machine under
			// -race can take long enough to make a 1s lease look lost.
			lk, err := holder.LockWithOptions(ctx, etcdlock.LockOptions{Key: "cut", TTL: 2 * time.Second, AutoRefresh: auto})
			require.NoError(t, err)
			next := toldFirst(t, ctx, c.Client(), p, lk)

			// Heal drops the connections that lost bytes; the client then
			// reconnects, so the first calls may fail.
			p.Heal()
			var late *clientv3.TxnResponse
			require.NoError(t, testkit.Retry(ctx, func(ctx context.Context) error {
				late, err = cut.Txn(ctx).If(lk.Guard()).Then(clientv3.OpPut("/data", "stale")).Commit()
				return err
			}))
			require.False(t, late.Succeeded, "the old holder's guarded write must be refused")
			fresh, err := c.Client().Txn(ctx).If(next.Guard()).Then(clientv3.OpPut("/data", "fresh")).Commit()
			require.NoError(t, err)
			require.True(t, fresh.Succeeded)
			require.NoError(t, next.Release(ctx))
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

// TestStaleHandleCannotTouchNewHold: a holder can never release or
// refresh another holder's lock. After a hold is lost and someone else
// acquires the name, the stale handle's Release and Refresh return
// ErrNotHeld and leave the new hold intact; its Guard fails.
func TestStaleHandleCannotTouchNewHold(t *testing.T) {
	c := embedtest.New(t)
	ctx := testkit.Context(t)
	for _, tc := range []struct {
		name      string
		auto      bool
		sameOwner bool // the new hold is the same Locker's
	}{
		{"TTL lock, other Locker", false, false},
		{"AutoRefresh lock, other Locker", true, false},
		{"TTL lock, same Locker", false, true},
		{"AutoRefresh lock, same Locker", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := newLocker(t, c.Client())
			b := a
			if !tc.sameOwner {
				b = newLocker(t, c.Client())
			}
			opts := etcdlock.LockOptions{Key: "stale", TTL: 5 * time.Second, AutoRefresh: tc.auto}
			stale, err := a.LockWithOptions(ctx, opts)
			require.NoError(t, err)
			info, err := a.Inspect(ctx, "stale")
			require.NoError(t, err)
			// The lease goes, as by expiry; the holder is told.
			_, err = c.Client().Revoke(ctx, clientv3.LeaseID(info.Holder.LeaseID))
			require.NoError(t, err)
			<-stale.Done()
			if tc.auto && tc.sameOwner {
				// Another TTL, so another shared lease: the Locker may not
				// know yet that the first one is gone (see
				// TestMisuseLockAfterSharedLeaseLost).
				opts.TTL = 6 * time.Second
			}
			fresh, err := b.LockWithOptions(ctx, opts)
			require.NoError(t, err)
			assert.ErrorIs(t, stale.Refresh(ctx, 5*time.Second), etcdlock.ErrNotHeld, "stale Refresh")
			assert.ErrorIs(t, stale.Refresh(ctx, 7*time.Second), etcdlock.ErrNotHeld, "stale Refresh to another TTL")
			assert.ErrorIs(t, stale.Release(ctx), etcdlock.ErrNotHeld, "stale Release")
			assert.ErrorIs(t, stale.Release(ctx), etcdlock.ErrNotHeld, "stale Release again")
			resp, err := c.Client().Txn(ctx).If(stale.Guard()).Commit()
			if assert.NoError(t, err) {
				assert.False(t, resp.Succeeded, "stale Guard holds")
			}
			ok, err := fresh.IsValid(ctx)
			assert.NoError(t, err)
			assert.True(t, ok, "the new hold was disturbed")
			info, err = a.Inspect(ctx, "stale")
			if assert.NoError(t, err) && assert.NotNil(t, info.Holder, "Inspect after the stale calls") {
				assert.Equal(t, fresh.Token(), info.Holder.Token, "Inspect after the stale calls")
			}
			assert.NoError(t, fresh.Release(ctx), "Release of the new hold")
		})
	}
	// A released handle of a reused slot: the same Locker's next hold of
	// the name reuses the key, with a new create revision.
	l := newLocker(t, c.Client())
	old, err := l.Lock(ctx, "reuse", 5*time.Second)
	require.NoError(t, err)
	require.NoError(t, old.Release(ctx))
	cur, err := l.Lock(ctx, "reuse", 5*time.Second)
	require.NoError(t, err)
	assert.ErrorIs(t, old.Release(ctx), etcdlock.ErrNotHeld, "second Release of a reused slot's old handle")
	assert.ErrorIs(t, old.Refresh(ctx, 5*time.Second), etcdlock.ErrNotHeld, "Refresh of a reused slot's old handle")
	ok, err := cur.IsValid(ctx)
	assert.NoError(t, err)
	assert.True(t, ok, "the new hold was disturbed")
	assert.NoError(t, cur.Release(ctx))
}

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
