package etcdlock_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/leasekit/leasekit/embedtest"
	"github.com/leasekit/leasekit/etcdlock"
	"github.com/leasekit/leasekit/internal/testkit"
)

// Helpers the tests of this package share. They wait on etcd events,
// never on a clock.

// newLocker returns a Locker on cli, closed with the test.
func newLocker(t *testing.T, cli *clientv3.Client, opts ...etcdlock.Option) *etcdlock.Locker {
	t.Helper()
	l, err := etcdlock.New(cli, opts...)
	require.NoError(t, err)
	t.Cleanup(func() { l.Close() })
	return l
}

// shapeLocker returns a Locker on a client of its own, closed with the test.
func shapeLocker(t *testing.T, c *embedtest.Cluster) (*etcdlock.Locker, *clientv3.Client) {
	t.Helper()
	cli, err := c.NewClient()
	require.NoError(t, err)
	return newLocker(t, cli), cli
}

// result is what a background acquisition returns.
type result struct {
	lk  etcdlock.Lock
	err error
}

// goAcquire runs acquire in the background and waits until its key (its
// hold or its place in the queue) is in etcd: one more key under prefix.
func goAcquire(t *testing.T, cli *clientv3.Client, prefix string, acquire func() (etcdlock.Lock, error)) <-chan result {
	t.Helper()
	before := testkit.CountKeys(t, cli, prefix)
	ch := make(chan result, 1)
	go func() {
		lk, err := acquire()
		ch <- result{lk, err}
	}()
	testkit.AwaitKeys(t, cli, prefix, before+1)
	return ch
}

// pending fails the test if a background acquisition has finished. The
// callers use it only where the queue's state rules finishing out.
func pending(t *testing.T, chs ...<-chan result) {
	t.Helper()
	for i, ch := range chs {
		select {
		case r := <-ch:
			require.FailNowf(t, "an acquisition finished early", "acquisition %d: %v", i, r.err)
		default:
		}
	}
}

// semPrefix is where semaphores keep their queues and limits.
const semPrefix = etcdlock.DefaultPrefix + "%sem/"

// holderOf returns the holder of the lock name, as Inspect reports it.
func holderOf(t *testing.T, cli *clientv3.Client, name string) *etcdlock.Entry {
	t.Helper()
	l, err := etcdlock.New(cli)
	require.NoError(t, err)
	defer l.Close()
	info, err := l.Inspect(context.Background(), name)
	require.NoError(t, err)
	require.NotNil(t, info.Holder)
	return info.Holder
}

// behindProxy returns a cluster, a proxy in front of its member and a
// Locker whose client goes through the proxy.
func behindProxy(t *testing.T, opts ...embedtest.Option) (*embedtest.Cluster, *embedtest.Proxy, *etcdlock.Locker) {
	t.Helper()
	c := embedtest.New(t, opts...)
	p, cli := testkit.Proxied(t, c, 0)
	return c, p, newLocker(t, cli)
}

// leaseOf returns the lease the hold of lk's name is attached to in etcd.
func leaseOf(t *testing.T, cli *clientv3.Client, lk etcdlock.Lock) int64 {
	t.Helper()
	h := holderOf(t, cli, lk.Key())
	require.Equal(t, lk.Token(), h.Token)
	return h.LeaseID
}

// takeOver has a new Locker on cli wait for lk's name and calls lose.
// Once the Locker holds the name and lk has been told it lost its hold,
// it returns the new hold and the order of the two events: "holder told"
// and "next acquired".
func takeOver(t *testing.T, ctx context.Context, cli *clientv3.Client, lk etcdlock.Lock, lose func()) (etcdlock.Lock, []string) {
	t.Helper()
	waiter := newLocker(t, cli)
	var mu sync.Mutex
	var events []string
	record := func(s string) { mu.Lock(); events = append(events, s); mu.Unlock() }
	told := make(chan struct{})
	go func() { <-lk.Done(); record("holder told"); close(told) }()
	got := make(chan etcdlock.Lock, 1)
	go func() {
		next, err := waiter.Lock(ctx, lk.Key(), 5*time.Second)
		if assert.NoError(t, err) {
			record("next acquired")
		}
		got <- next
	}()
	lose()
	next := <-got
	require.NotNil(t, next)
	<-told
	mu.Lock()
	defer mu.Unlock()
	return next, events
}

// toldFirst cuts the holder of lk off (p) once another Locker, through
// cli, waits for the lock, and checks that the holder is told of the loss
// before that Locker acquires. It returns the new hold.
func toldFirst(t *testing.T, ctx context.Context, cli *clientv3.Client, p *embedtest.Proxy, lk etcdlock.Lock) etcdlock.Lock {
	t.Helper()
	keys := testkit.CountKeys(t, cli, etcdlock.DefaultPrefix)
	next, order := takeOver(t, ctx, cli, lk, func() {
		testkit.AwaitKeys(t, cli, etcdlock.DefaultPrefix, keys+1)
		p.Cut()
	})
	require.Equal(t, []string{"holder told", "next acquired"}, order)
	require.ErrorIs(t, lk.Err(), etcdlock.ErrLockLost)
	return next
}
