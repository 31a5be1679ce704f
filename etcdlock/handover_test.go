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
