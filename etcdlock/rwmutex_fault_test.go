package etcdlock_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/leasekit/leasekit/embedtest"
	"github.com/leasekit/leasekit/etcdlock"
	"github.com/leasekit/leasekit/internal/testkit"
)

// memberClient returns a client of member i alone.
func memberClient(t *testing.T, c *embedtest.Cluster, i int) *clientv3.Client {
	t.Helper()
	cli, err := c.NewClient(clientv3.Config{Endpoints: []string{c.Member(i).ClientURL()}})
	require.NoError(t, err)
	return cli
}

// awaitNoLeaderCancel waits until member i cancels its streams that
// require a leader, as it does after it has had no leader for a few
// election timeouts: a watch of cli's (a client of member i alone) ends
// with an error.
func awaitNoLeaderCancel(t *testing.T, ctx context.Context, cli *clientv3.Client) {
	t.Helper()
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	for wr := range cli.Watch(wctx, "/probe") {
		if wr.Err() != nil {
			return
		}
	}
	require.NoError(t, ctx.Err(), "the member kept its watches")
}

// Waiters ride out an etcd member losing its leader: their watches are
// cancelled, and the read that follows can fail while the member has no
// leader (or as it learns of one: "leader changed"). Such errors are
// transient; a wait goes on until its context ends. Mutex waiters did;
// readers of an RWMutex failed.
func TestWaitersRideOutLeaderLoss(t *testing.T) {
	c := embedtest.New(t, embedtest.WithMembers(3))
	ctx := testkit.Context(t)
	lead, err := c.WaitLeader(ctx)
	require.NoError(t, err)
	cut := (lead + 1) % 3   // the waiters' member, cut off from its peers
	other := (lead + 2) % 3 // the holders'
	holders, err := etcdlock.New(memberClient(t, c, other))
	require.NoError(t, err)
	t.Cleanup(func() { holders.Close() })
	waiterCli := memberClient(t, c, cut)
	waiters, err := etcdlock.New(waiterCli)
	require.NoError(t, err)
	t.Cleanup(func() { waiters.Close() })
	rw, err := holders.RWMutex("rw")
	require.NoError(t, err)
	rwWaiter, err := waiters.RWMutex("rw")
	require.NoError(t, err)
	opts := etcdlock.LockOptions{TTL: 10 * time.Second, AutoRefresh: true}

	writer, err := rw.LockWithOptions(ctx, opts)
	require.NoError(t, err)
	mutex, err := holders.LockWithOptions(ctx, etcdlock.LockOptions{Key: "m", TTL: opts.TTL, AutoRefresh: true})
	require.NoError(t, err)
	admin := c.Client()
	reader := goAcquire(t, admin, etcdlock.DefaultPrefix+"%rw/", func() (etcdlock.Lock, error) {
		return rwWaiter.RLockWithOptions(ctx, opts)
	})
	waiter := goAcquire(t, admin, etcdlock.DefaultPrefix+"m/", func() (etcdlock.Lock, error) {
		return waiters.LockWithOptions(ctx, etcdlock.LockOptions{Key: "m", TTL: opts.TTL, AutoRefresh: true})
	})

	require.NoError(t, c.Partition(cut))
	awaitNoLeaderCancel(t, ctx, waiterCli)
	require.NoError(t, c.Heal(cut))
	pending(t, reader, waiter)

	require.NoError(t, writer.Release(ctx))
	require.NoError(t, mutex.Release(ctx))
	for what, ch := range map[string]<-chan result{"read lock": reader, "mutex": waiter} {
		r := testkit.Recv(t, ch)
		require.NoError(t, r.err, what)
		require.NoError(t, r.lk.Release(ctx), what)
	}
}
