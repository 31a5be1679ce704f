package etcdlock_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/leasekit/leasekit/embedtest"
	"github.com/leasekit/leasekit/etcdlock"
	"github.com/leasekit/leasekit/internal/testkit"
)

// A wait in line ends, with ErrLockLost, when its own key goes, even in
// the revision that would admit it; it rides out the transient errors of
// an etcd member that loses its leader.

func TestWaiterWhoseKeyVanishesStops(t *testing.T) {
	c := embedtest.New(t)
	ctx := testkit.Context(t)
	l := newLocker(t, c.Client())
	held, err := l.Lock(ctx, "vanish", 5*time.Second)
	require.NoError(t, err)
	waiting := goAcquire(t, c.Client(), etcdlock.DefaultPrefix, func() (etcdlock.Lock, error) {
		return l.Lock(ctx, "vanish", 5*time.Second)
	})
	info, err := l.Inspect(ctx, "vanish")
	require.NoError(t, err)
	require.Len(t, info.Waiters, 1)
	_, err = c.Client().Revoke(ctx, clientv3.LeaseID(info.Waiters[0].LeaseID))
	require.NoError(t, err)
	require.ErrorIs(t, testkit.Recv(t, waiting).err, etcdlock.ErrLockLost)
	require.NoError(t, held.Release(ctx))
	require.Zero(t, testkit.CountKeys(t, c.Client(), etcdlock.DefaultPrefix))
}

// A waiter whose own key is deleted in the very revision that deletes the
// holder's (etcdctl del --prefix on the lock, one transaction) must not be
// admitted: Lock fails with ErrLockLost, never returns a hold whose key is
// gone. Each shape that waits in line is tried, the mutex 20 times.
// (Readers read their own key after the writer ahead goes; the others
// see it in the queue watch's response.)
func TestWaiterDeletedInHandover(t *testing.T) {
	c := embedtest.New(t)
	ctx := testkit.Context(t)
	admin := c.Client()
	holder := newLocker(t, admin)
	wcli, err := c.NewClient()
	require.NoError(t, err)
	waiter := newLocker(t, wcli)
	type lockFunc func(l *etcdlock.Locker, name string) (etcdlock.Lock, error)
	writeLock := func(l *etcdlock.Locker, name string) (etcdlock.Lock, error) {
		m, err := l.RWMutex(name)
		require.NoError(t, err)
		return m.Lock(ctx, 5*time.Second)
	}
	for _, tc := range []struct {
		shape  string
		rounds int
		queue  string   // the queue's prefix, NAME standing for the name
		lock   lockFunc // the waiter's
		hold   lockFunc // the holder's, if not lock
	}{
		{"mutex", 20, etcdlock.DefaultPrefix + "NAME/", func(l *etcdlock.Locker, name string) (etcdlock.Lock, error) {
			return l.Lock(ctx, name, 5*time.Second)
		}, nil},
		{"mutex/AutoRefresh", 10, etcdlock.DefaultPrefix + "NAME/", func(l *etcdlock.Locker, name string) (etcdlock.Lock, error) {
			return l.LockWithOptions(ctx, etcdlock.LockOptions{Key: name, TTL: 5 * time.Second, AutoRefresh: true})
		}, nil},
		{"semaphore", 10, semPrefix + "NAME/q/", func(l *etcdlock.Locker, name string) (etcdlock.Lock, error) {
			s, err := l.Semaphore(name, 1)
			require.NoError(t, err)
			return s.Acquire(ctx, 5*time.Second)
		}, nil},
		{"write lock", 10, etcdlock.DefaultPrefix + "%rw/NAME/", writeLock, nil},
		{"read lock behind a writer", 10, etcdlock.DefaultPrefix + "%rw/NAME/", func(l *etcdlock.Locker, name string) (etcdlock.Lock, error) {
			m, err := l.RWMutex(name)
			require.NoError(t, err)
			return m.RLock(ctx, 5*time.Second)
		}, writeLock},
	} {
		t.Run(tc.shape, func(t *testing.T) {
			for round := range tc.rounds {
				name := fmt.Sprintf("wipe-%d", round)
				queue := strings.ReplaceAll(tc.queue, "NAME", name)
				hold := tc.hold
				if hold == nil {
					hold = tc.lock
				}
				held, err := hold(holder, name)
				require.NoError(t, err)
				waiting := goAcquire(t, admin, queue, func() (etcdlock.Lock, error) {
					return tc.lock(waiter, name)
				})
				resp, err := admin.Get(ctx, queue, clientv3.WithPrefix(), clientv3.WithKeysOnly())
				require.NoError(t, err)
				require.Len(t, resp.Kvs, 2)
				// Both keys, holder's and waiter's, in one revision.
				var dels []clientv3.Op
				for _, kv := range resp.Kvs {
					dels = append(dels, clientv3.OpDelete(string(kv.Key)))
				}
				_, err = admin.Txn(ctx).Then(dels...).Commit()
				require.NoError(t, err)
				r := testkit.Recv(t, waiting)
				if r.err == nil {
					guarded, gerr := admin.Txn(ctx).If(r.lk.Guard()).Commit()
					require.NoError(t, gerr)
					r.lk.Release(context.Background())
					require.FailNowf(t, "admitted with a key that is gone", "round %d: its guard holds: %v", round, guarded.Succeeded)
				}
				require.ErrorIs(t, r.err, etcdlock.ErrLockLost, "round %d", round)
				// The holder's loss is another test's subject.
				held.Release(ctx)
				require.Zero(t, testkit.CountKeys(t, admin, queue))
			}
		})
	}
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
	holders, err := etcdlock.New(testkit.MemberClient(t, c, other))
	require.NoError(t, err)
	t.Cleanup(func() { holders.Close() })
	waiterCli := testkit.MemberClient(t, c, cut)
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
