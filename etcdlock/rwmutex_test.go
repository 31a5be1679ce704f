package etcdlock_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/leasekit/leasekit/embedtest"
	"github.com/leasekit/leasekit/etcdlock"
	"github.com/leasekit/leasekit/internal/testkit"
)

const rwPrefix = etcdlock.DefaultPrefix + "%rw/"

func TestRWMutexBadInput(t *testing.T) {
	c := embedtest.New(t)
	ctx := testkit.Context(t)
	l, _ := shapeLocker(t, c)
	_, err := l.RWMutex("")
	require.ErrorIs(t, err, etcdlock.ErrInvalidKey)
	m, err := l.RWMutex("bad")
	require.NoError(t, err)
	require.Equal(t, "bad", m.Name())
	for _, tc := range []struct {
		name string
		opts etcdlock.LockOptions
		want error
	}{
		{"zero TTL", etcdlock.LockOptions{}, etcdlock.ErrInvalidTTL},
		{"negative TTL", etcdlock.LockOptions{TTL: -time.Second}, etcdlock.ErrInvalidTTL},
		{"other name", etcdlock.LockOptions{Key: "other", TTL: time.Second}, etcdlock.ErrInvalidKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := m.LockWithOptions(ctx, tc.opts)
			require.ErrorIs(t, err, tc.want)
			_, err = m.RLockWithOptions(ctx, tc.opts)
			require.ErrorIs(t, err, tc.want)
		})
	}
	_, _, err = m.TryLock(ctx, 0)
	require.ErrorIs(t, err, etcdlock.ErrInvalidTTL)
	_, _, err = m.TryRLock(ctx, -1)
	require.ErrorIs(t, err, etcdlock.ErrInvalidTTL)
	require.Zero(t, testkit.CountKeys(t, c.Client(), etcdlock.DefaultPrefix), "bad input must write nothing")
}

// TestRWMutexQueue walks the queue through its states: readers share,
// a writer waits for the readers ahead of it, a reader waits for the writer
// ahead of it, and the writer's release admits every reader behind it.
func TestRWMutexQueue(t *testing.T) {
	c := embedtest.New(t)
	ctx := testkit.Context(t)
	queue := rwPrefix + "q/"
	lock := func() *etcdlock.RWMutex {
		l, _ := shapeLocker(t, c)
		m, err := l.RWMutex("q")
		require.NoError(t, err)
		return m
	}
	r1, err := lock().RLock(ctx, 10*time.Second)
	require.NoError(t, err)
	r2, err := lock().RLock(ctx, 10*time.Second)
	require.NoError(t, err, "readers share")

	w := lock()
	wch := goAcquire(t, c.Client(), queue, func() (etcdlock.Lock, error) { return w.Lock(ctx, 10*time.Second) })
	var readers []<-chan result
	for range 3 {
		r := lock()
		readers = append(readers, goAcquire(t, c.Client(), queue, func() (etcdlock.Lock, error) {
			return r.RLock(ctx, 10*time.Second)
		}))
	}
	pending(t, append(readers, wch)...)
	_, ok, err := lock().TryRLock(ctx, 10*time.Second)
	require.NoError(t, err)
	require.False(t, ok, "a writer waits")
	_, ok, err = lock().TryLock(ctx, 10*time.Second)
	require.NoError(t, err)
	require.False(t, ok)

	require.NoError(t, r1.Release(ctx))
	pending(t, append(readers, wch)...) // r2 is still ahead of the writer
	require.NoError(t, r2.Release(ctx))
	wr := testkit.Recv(t, wch)
	require.NoError(t, wr.err)
	pending(t, readers...)

	require.NoError(t, wr.lk.Release(ctx))
	var held []etcdlock.Lock
	for _, ch := range readers {
		r := testkit.Recv(t, ch)
		require.NoError(t, r.err)
		require.Greater(t, r.lk.Token(), wr.lk.Token())
		held = append(held, r.lk)
	}
	r3, ok, err := lock().TryRLock(ctx, 10*time.Second)
	require.NoError(t, err)
	require.True(t, ok, "readers only")
	for _, lk := range append(held, r3) {
		require.NoError(t, lk.Release(ctx))
	}
	require.Zero(t, testkit.CountKeys(t, c.Client(), etcdlock.DefaultPrefix))
}

// TestRWMutexExclusion runs readers and writers with their own clients on
// one lock and checks that a writer always holds alone.
// With three members, serializable reads go to followers that may lag.
func TestRWMutexExclusion(t *testing.T) {
	for _, members := range []int{1, 3} {
		t.Run(fmt.Sprintf("members=%d", members), func(t *testing.T) {
			testRWMutexExclusion(t, embedtest.New(t, embedtest.WithMembers(members)))
		})
	}
}

func testRWMutexExclusion(t *testing.T, c *embedtest.Cluster) {
	ctx := testkit.Context(t)
	const workers, rounds = 6, 10
	var (
		readers, writers atomic.Int32
		mostReaders      atomic.Int32
		wg               sync.WaitGroup
	)
	for w := range workers {
		l, _ := shapeLocker(t, c)
		m, err := l.RWMutex("excl")
		require.NoError(t, err)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range rounds {
				opts := etcdlock.LockOptions{TTL: 10 * time.Second, AutoRefresh: w%2 == 0}
				write := (w+i)%3 == 0
				var lk etcdlock.Lock
				var err error
				if write {
					lk, err = m.LockWithOptions(ctx, opts)
				} else {
					lk, err = m.RLockWithOptions(ctx, opts)
				}
				if !assert.NoError(t, err) {
					return
				}
				if write {
					n := writers.Add(1)
					assert.True(t, n == 1 && readers.Load() == 0, "writer holds with %d writers and %d readers", n, readers.Load())
				} else {
					n := readers.Add(1)
					assert.Zero(t, writers.Load(), "reader holds with a writer")
					for m := mostReaders.Load(); n > m && !mostReaders.CompareAndSwap(m, n); m = mostReaders.Load() {
					}
				}
				time.Sleep(time.Millisecond) // the work done under the lock
				if write {
					writers.Add(-1)
				} else {
					readers.Add(-1)
				}
				if !assert.NoError(t, lk.Release(ctx)) {
					return
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("at most %d readers at once", mostReaders.Load())
	require.Zero(t, testkit.CountKeys(t, c.Client(), rwPrefix))
}

// TestRWMutexWriterNotStarved keeps the lock read-held by overlapping
// readers without a gap, then asks for it to write. The writer must get
// it, and no reader that queued behind the writer may read before the
// writer is done.
func TestRWMutexWriterNotStarved(t *testing.T) {
	c := embedtest.New(t)
	ctx := testkit.Context(t)
	const readers = 4
	const (
		before = iota // the writer has not asked yet
		asked         // the writer is queued or holds
		done          // the writer released
	)
	var (
		phase   atomic.Int32
		wToken  atomic.Int64
		reads   atomic.Int64
		started = make(chan struct{})
		// readDone is signalled after each read is counted.
		readDone = make(chan struct{}, 1)
		once     sync.Once
		stop     = make(chan struct{})
		wg       sync.WaitGroup
	)
	type read struct {
		token int64
		phase int32
	}
	var mu sync.Mutex
	var log []read
	for range readers {
		l, _ := shapeLocker(t, c)
		m, err := l.RWMutex("starve")
		require.NoError(t, err)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				lk, err := m.RLockWithOptions(ctx, etcdlock.LockOptions{TTL: 10 * time.Second, AutoRefresh: true})
				if !assert.NoError(t, err) {
					return
				}
				mu.Lock()
				log = append(log, read{lk.Token(), phase.Load()})
				mu.Unlock()
				if reads.Add(1) >= 2*readers {
					once.Do(func() { close(started) })
				}
				select {
				case readDone <- struct{}{}:
				default: // one signal pending is enough: the count is read again
				}
				time.Sleep(3 * time.Millisecond) // overlap the other readers
				if !assert.NoError(t, lk.Release(ctx)) {
					return
				}
			}
		}()
	}
	<-started
	l, _ := shapeLocker(t, c)
	m, err := l.RWMutex("starve")
	require.NoError(t, err)
	phase.Store(asked)
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	w, err := m.Lock(wctx, 10*time.Second)
	require.NoError(t, err, "the writer must not starve")
	wToken.Store(w.Token())
	phase.Store(done)
	require.NoError(t, w.Release(ctx))
	// Let a few reads happen after the writer, then stop.
	for n := reads.Load(); reads.Load() < n+readers; {
		testkit.Recv(t, readDone)
	}
	close(stop)
	wg.Wait()

	mu.Lock()
	defer mu.Unlock()
	var behind int
	for _, r := range log {
		if r.token > wToken.Load() {
			behind++
			require.Equal(t, int32(done), r.phase, "a reader queued behind the writer read before it was done")
		}
	}
	require.Positive(t, behind)
	require.Zero(t, testkit.CountKeys(t, c.Client(), rwPrefix))
}

func TestRWMutexCancelLeavesNoKeys(t *testing.T) {
	c := embedtest.New(t)
	ctx := testkit.Context(t)
	l, _ := shapeLocker(t, c)
	m, err := l.RWMutex("cancel")
	require.NoError(t, err)
	queue := rwPrefix + "cancel/"
	w, err := m.Lock(ctx, 5*time.Second)
	require.NoError(t, err)

	short := etcdlock.LockOptions{TTL: 5 * time.Second, Timeout: 50 * time.Millisecond}
	_, err = m.RLockWithOptions(ctx, short)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	_, err = m.LockWithOptions(ctx, short)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Equal(t, 1, testkit.CountKeys(t, c.Client(), queue))

	for _, write := range []bool{false, true} {
		cctx, cancel := context.WithCancel(ctx)
		ch := goAcquire(t, c.Client(), queue, func() (etcdlock.Lock, error) {
			if write {
				return m.Lock(cctx, 5*time.Second)
			}
			return m.RLock(cctx, 5*time.Second)
		})
		cancel()
		r := testkit.Recv(t, ch)
		require.ErrorIs(t, r.err, context.Canceled)
		require.Equal(t, 1, testkit.CountKeys(t, c.Client(), queue))
	}

	// A reader whose lease goes while it waits is told so.
	lost, cli := shapeLocker(t, c)
	lm, err := lost.RWMutex("cancel")
	require.NoError(t, err)
	ch := goAcquire(t, c.Client(), queue, func() (etcdlock.Lock, error) {
		return lm.RLock(ctx, 5*time.Second)
	})
	resp, err := cli.Get(ctx, queue+"r/", clientv3.WithPrefix())
	require.NoError(t, err)
	require.Len(t, resp.Kvs, 1)
	_, err = cli.Revoke(ctx, clientv3.LeaseID(resp.Kvs[0].Lease))
	require.NoError(t, err)
	r := testkit.Recv(t, ch)
	require.ErrorIs(t, r.err, etcdlock.ErrLockLost)

	// Close ends a wait.
	ch = goAcquire(t, c.Client(), queue, func() (etcdlock.Lock, error) {
		return lm.RLock(ctx, 5*time.Second)
	})
	require.NoError(t, lost.Close())
	r = testkit.Recv(t, ch)
	require.ErrorIs(t, r.err, etcdlock.ErrClosed)

	require.Equal(t, 1, testkit.CountKeys(t, c.Client(), queue))
	require.NoError(t, w.Release(ctx))
	require.Zero(t, testkit.CountKeys(t, c.Client(), etcdlock.DefaultPrefix))
}
