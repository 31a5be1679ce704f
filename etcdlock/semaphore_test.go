package etcdlock_test

import (
	"context"
	"fmt"
	"slices"
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

func TestSemaphoreBadInput(t *testing.T) {
	c := embedtest.New(t)
	ctx := testkit.Context(t)
	l, _ := shapeLocker(t, c)
	for _, tc := range []struct {
		name string
		n    int
		want error
	}{
		{"zero", 0, etcdlock.ErrInvalidLimit},
		{"negative", -1, etcdlock.ErrInvalidLimit},
		{"too large", etcdlock.MaxSemaphoreLimit + 1, etcdlock.ErrInvalidLimit},
		{"", 1, etcdlock.ErrInvalidKey},
		{string([]byte{0xff}), 1, etcdlock.ErrInvalidKey},
	} {
		t.Run(fmt.Sprintf("name=%q/n=%d", tc.name, tc.n), func(t *testing.T) {
			s, err := l.Semaphore(tc.name, tc.n)
			require.ErrorIs(t, err, tc.want)
			require.Nil(t, s)
		})
	}

	s, err := l.Semaphore("bad", 2)
	require.NoError(t, err)
	require.Equal(t, "bad", s.Name())
	require.Equal(t, 2, s.Limit())
	for _, tc := range []struct {
		name string
		opts etcdlock.LockOptions
		want error
	}{
		{"zero TTL", etcdlock.LockOptions{}, etcdlock.ErrInvalidTTL},
		{"negative TTL", etcdlock.LockOptions{TTL: -time.Second}, etcdlock.ErrInvalidTTL},
		{"negative timeout", etcdlock.LockOptions{TTL: time.Second, Timeout: -1}, etcdlock.ErrInvalidTTL},
		{"other name", etcdlock.LockOptions{Key: "other", TTL: time.Second}, etcdlock.ErrInvalidKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.AcquireWithOptions(ctx, tc.opts)
			require.ErrorIs(t, err, tc.want)
		})
	}
	_, _, err = s.TryAcquire(ctx, 0)
	require.ErrorIs(t, err, etcdlock.ErrInvalidTTL)
	require.Zero(t, testkit.CountKeys(t, c.Client(), etcdlock.DefaultPrefix), "bad input must write nothing")
}

func TestSemaphoreLimitMismatch(t *testing.T) {
	c := embedtest.New(t)
	ctx := testkit.Context(t)
	l1, _ := shapeLocker(t, c)
	l2, cli := shapeLocker(t, c)
	two, err := l1.Semaphore("pool", 2)
	require.NoError(t, err)
	three, err := l2.Semaphore("pool", 3)
	require.NoError(t, err)

	a, err := two.Acquire(ctx, 5*time.Second)
	require.NoError(t, err)
	_, err = three.Acquire(ctx, 5*time.Second)
	require.ErrorIs(t, err, etcdlock.ErrLimitMismatch)
	_, _, err = three.TryAcquire(ctx, 5*time.Second)
	require.ErrorIs(t, err, etcdlock.ErrLimitMismatch)

	// The limit outlives the lease that stored it while the name is in
	// use: b joins under it, then a, which stored it, leaves.
	b, err := two.Acquire(ctx, 5*time.Second)
	require.NoError(t, err)
	require.NoError(t, a.Release(ctx))
	_, err = three.Acquire(ctx, 5*time.Second)
	require.ErrorIs(t, err, etcdlock.ErrLimitMismatch, "a key in the queue still tells the limit")
	a, err = two.Acquire(ctx, 5*time.Second)
	require.NoError(t, err, "an agreeing user restores the limit")
	_, err = three.Acquire(ctx, 5*time.Second)
	require.ErrorIs(t, err, etcdlock.ErrLimitMismatch)

	// Once nobody uses the name, a new limit can be stored.
	require.NoError(t, a.Release(ctx))
	require.NoError(t, b.Release(ctx))
	require.Zero(t, testkit.CountKeys(t, cli, etcdlock.DefaultPrefix))
	lk, err := three.Acquire(ctx, 5*time.Second)
	require.NoError(t, err)
	_, err = two.Acquire(ctx, 5*time.Second)
	require.ErrorIs(t, err, etcdlock.ErrLimitMismatch)
	require.NoError(t, lk.Release(ctx))
}

// TestSemaphoreNeverExceedsLimit runs workers with their own clients
// against one semaphore and checks, from the intervals in which each held a
// permit, that no more than n held at once. An interval runs from Acquire's
// return to the call of Release, inside the time etcd kept the permit, so
// overlapping intervals mean overlapping permits.
// With three members, serializable reads go to followers that may lag.
func TestSemaphoreNeverExceedsLimit(t *testing.T) {
	for _, members := range []int{1, 3} {
		t.Run(fmt.Sprintf("members=%d", members), func(t *testing.T) {
			testSemaphoreNeverExceedsLimit(t, embedtest.New(t, embedtest.WithMembers(members)))
		})
	}
}

func testSemaphoreNeverExceedsLimit(t *testing.T, c *embedtest.Cluster) {
	ctx := testkit.Context(t)
	const n, workers, rounds = 3, 8, 12
	type interval struct{ from, to time.Time }
	var (
		mu        sync.Mutex
		intervals []interval
		tokens    []int64
		wg        sync.WaitGroup
	)
	for w := range workers {
		l, _ := shapeLocker(t, c)
		s, err := l.Semaphore("limit", n)
		require.NoError(t, err)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range rounds {
				lk, err := s.AcquireWithOptions(ctx, etcdlock.LockOptions{TTL: 10 * time.Second, AutoRefresh: w%2 == 0})
				if !assert.NoError(t, err) {
					return
				}
				from := time.Now()
				time.Sleep(time.Millisecond) // the work done under the permit
				to := time.Now()
				mu.Lock()
				intervals = append(intervals, interval{from, to})
				tokens = append(tokens, lk.Token())
				mu.Unlock()
				if !assert.NoError(t, lk.Release(ctx)) {
					return
				}
			}
		}()
	}
	wg.Wait()
	require.Len(t, intervals, workers*rounds)

	type edge struct {
		at    time.Time
		delta int
	}
	var edges []edge
	for _, iv := range intervals {
		edges = append(edges, edge{iv.from, 1}, edge{iv.to, -1})
	}
	// Ends sort before starts at the same instant: touching is not overlap.
	slices.SortFunc(edges, func(a, b edge) int {
		if c := a.at.Compare(b.at); c != 0 {
			return c
		}
		return a.delta - b.delta
	})
	held, most := 0, 0
	for _, e := range edges {
		held += e.delta
		most = max(most, held)
	}
	require.LessOrEqual(t, most, n)
	t.Logf("at most %d of %d permits held at once", most, n)
	slices.Sort(tokens)
	require.Len(t, slices.Compact(tokens), workers*rounds, "tokens are unique")
	require.Equal(t, 0, testkit.CountKeys(t, c.Client(), semPrefix+"limit/q/"))
}

func TestSemaphoreFIFO(t *testing.T) {
	c := embedtest.New(t)
	ctx := testkit.Context(t)
	const n = 2
	sems := make([]*etcdlock.Semaphore, 6)
	for i := range sems {
		l, _ := shapeLocker(t, c)
		s, err := l.Semaphore("fifo", n)
		require.NoError(t, err)
		sems[i] = s
	}
	queue := semPrefix + "fifo/q/"
	a, err := sems[0].Acquire(ctx, 10*time.Second)
	require.NoError(t, err)
	b, err := sems[1].Acquire(ctx, 10*time.Second)
	require.NoError(t, err)

	// Queue four waiters, one after another, so their order is known.
	var waiters []<-chan result
	for _, s := range sems[2:] {
		waiters = append(waiters, goAcquire(t, c.Client(), queue, func() (etcdlock.Lock, error) {
			return s.Acquire(ctx, 10*time.Second)
		}))
	}
	pending(t, waiters...)

	// Each release admits exactly the longest waiter.
	held := []etcdlock.Lock{a, b}
	var granted []etcdlock.Lock
	for i, w := range waiters {
		require.NoError(t, held[0].Release(ctx))
		held = held[1:]
		r := testkit.Recv(t, w)
		require.NoError(t, r.err)
		pending(t, waiters[i+1:]...)
		held = append(held, r.lk)
		granted = append(granted, r.lk)
	}
	for i := 1; i < len(granted); i++ {
		require.Greater(t, granted[i].Token(), granted[i-1].Token())
	}
	require.Greater(t, granted[0].Token(), b.Token())
	for _, lk := range held {
		require.NoError(t, lk.Release(ctx))
	}
	require.Zero(t, testkit.CountKeys(t, c.Client(), etcdlock.DefaultPrefix))
}

func TestSemaphoreTryAcquire(t *testing.T) {
	c := embedtest.New(t)
	ctx := testkit.Context(t)
	l, _ := shapeLocker(t, c)
	s, err := l.Semaphore("try", 2)
	require.NoError(t, err)
	a, ok, err := s.TryAcquire(ctx, 5*time.Second)
	require.NoError(t, err)
	require.True(t, ok)
	b, ok, err := s.TryAcquire(ctx, 5*time.Second)
	require.NoError(t, err)
	require.True(t, ok)

	before, err := c.Client().Get(ctx, "any")
	require.NoError(t, err)
	none, ok, err := s.TryAcquire(ctx, 5*time.Second)
	require.NoError(t, err)
	require.False(t, ok)
	require.Nil(t, none)
	after, err := c.Client().Get(ctx, "any")
	require.NoError(t, err)
	require.Equal(t, before.Header.Revision, after.Header.Revision, "a failed TryAcquire must write nothing")

	require.NoError(t, a.Release(ctx))
	a, ok, err = s.TryAcquire(ctx, 5*time.Second)
	require.NoError(t, err)
	require.True(t, ok)
	require.NoError(t, a.Release(ctx))
	require.NoError(t, b.Release(ctx))
}

// TestSemaphoreCrashedHolder checks that a permit whose holder is gone
// without releasing goes to the next waiter: at once when its lease is
// revoked, after the TTL when its client just stops.
func TestSemaphoreCrashedHolder(t *testing.T) {
	for _, how := range []string{"lease revoked", "client closed"} {
		t.Run(how, func(t *testing.T) {
			c := embedtest.New(t)
			ctx := testkit.Context(t)
			queue := semPrefix + "crash/q/"
			crashing, crashCli := shapeLocker(t, c)
			cs, err := crashing.Semaphore("crash", 1)
			require.NoError(t, err)
			held, err := cs.AcquireWithOptions(ctx, etcdlock.LockOptions{TTL: time.Second, AutoRefresh: true})
			require.NoError(t, err)

			l, _ := shapeLocker(t, c)
			s, err := l.Semaphore("crash", 1)
			require.NoError(t, err)
			waiter := goAcquire(t, c.Client(), queue, func() (etcdlock.Lock, error) {
				return s.Acquire(ctx, 10*time.Second)
			})
			pending(t, waiter)

			switch how {
			case "lease revoked":
				resp, err := c.Client().Get(ctx, queue, clientv3.WithPrefix(), clientv3.WithMaxCreateRev(held.Token()),
					clientv3.WithMinCreateRev(held.Token()))
				require.NoError(t, err)
				require.Len(t, resp.Kvs, 1)
				_, err = c.Client().Revoke(ctx, clientv3.LeaseID(resp.Kvs[0].Lease))
				require.NoError(t, err)
				select {
				case <-held.Done():
				case <-ctx.Done():
					require.FailNow(t, "the crashed holder's Done did not close")
				}
				require.ErrorIs(t, held.Err(), etcdlock.ErrLockLost)
			case "client closed":
				require.NoError(t, crashCli.Close())
			}
			r := testkit.Recv(t, waiter)
			require.NoError(t, r.err)
			require.Greater(t, r.lk.Token(), held.Token())
			require.NoError(t, r.lk.Release(ctx))
		})
	}
}

func TestSemaphoreCancelLeavesNoKeys(t *testing.T) {
	c := embedtest.New(t)
	ctx := testkit.Context(t)
	l, _ := shapeLocker(t, c)
	s, err := l.Semaphore("cancel", 1)
	require.NoError(t, err)
	queue := semPrefix + "cancel/q/"
	held, err := s.Acquire(ctx, 5*time.Second)
	require.NoError(t, err)

	_, err = s.AcquireWithOptions(ctx, etcdlock.LockOptions{TTL: 5 * time.Second, Timeout: 50 * time.Millisecond})
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Equal(t, 1, testkit.CountKeys(t, c.Client(), queue))

	cctx, cancel := context.WithCancel(ctx)
	waiter := goAcquire(t, c.Client(), queue, func() (etcdlock.Lock, error) {
		return s.Acquire(cctx, 5*time.Second)
	})
	cancel()
	r := testkit.Recv(t, waiter)
	require.ErrorIs(t, r.err, context.Canceled)
	require.Equal(t, 1, testkit.CountKeys(t, c.Client(), queue))

	// Close ends a wait too.
	other, _ := shapeLocker(t, c)
	s2, err := other.Semaphore("cancel", 1)
	require.NoError(t, err)
	waiter = goAcquire(t, c.Client(), queue, func() (etcdlock.Lock, error) {
		return s2.Acquire(ctx, 5*time.Second)
	})
	require.NoError(t, other.Close())
	r = testkit.Recv(t, waiter)
	require.ErrorIs(t, r.err, etcdlock.ErrClosed)
	_, err = s2.Acquire(ctx, 5*time.Second)
	require.ErrorIs(t, err, etcdlock.ErrClosed)

	require.NoError(t, held.Release(ctx))
	require.Zero(t, testkit.CountKeys(t, c.Client(), etcdlock.DefaultPrefix), "no permit, waiter or limit key is left")
}

// TestSemaphoreAndRWMutexApartFromLock checks that a mutex, a semaphore and
// an RWMutex of one name do not see each other.
func TestSemaphoreAndRWMutexApartFromLock(t *testing.T) {
	c := embedtest.New(t)
	ctx := testkit.Context(t)
	l, _ := shapeLocker(t, c)
	mu, err := l.Lock(ctx, "same", 5*time.Second)
	require.NoError(t, err)
	s, err := l.Semaphore("same", 1)
	require.NoError(t, err)
	rw, err := l.RWMutex("same")
	require.NoError(t, err)
	permit, ok, err := s.TryAcquire(ctx, 5*time.Second)
	require.NoError(t, err)
	require.True(t, ok)
	w, ok, err := rw.TryLock(ctx, 5*time.Second)
	require.NoError(t, err)
	require.True(t, ok)
	for _, lk := range []etcdlock.Lock{mu, permit, w} {
		require.Equal(t, "same", lk.Key())
		require.NoError(t, lk.Release(ctx))
	}
}

// A semaphore's limit binds while its name is in use, and not after: a
// limit stored on a Locker's shared lease (AutoRefresh) must not refuse
// another limit once the queue is empty, whether the acquisition that
// stored it held a permit or its join's outcome was never known.
func TestSemaphoreLimitEndsWithItsUse(t *testing.T) {
	c := embedtest.New(t)
	ctx := testkit.Context(t)
	admin := c.Client()
	p, slow := testkit.Proxied(t, c, 0)
	l := newLocker(t, slow)
	other := newLocker(t, admin)
	auto := etcdlock.LockOptions{TTL: 5 * time.Second, AutoRefresh: true}
	queue := semPrefix + "pool/q/"

	t.Run("after a permit", func(t *testing.T) {
		two, err := l.Semaphore("pool", 2)
		require.NoError(t, err)
		lk, err := two.AcquireWithOptions(ctx, auto)
		require.NoError(t, err)
		require.NoError(t, lk.Release(ctx))
		three, err := other.Semaphore("pool", 3)
		require.NoError(t, err)
		lk, err = three.AcquireWithOptions(ctx, auto)
		require.NoError(t, err, "nobody uses the name: a new limit is stored")
		require.NoError(t, lk.Release(ctx))
	})

	t.Run("after a join of unknown outcome", func(t *testing.T) {
		two, err := l.Semaphore("ambiguous", 2)
		require.NoError(t, err)
		// With the shared lease granted first, the join is the only call:
		// it reaches etcd after its ctx has ended.
		warm, err := l.LockWithOptions(ctx, etcdlock.LockOptions{Key: "warm", TTL: auto.TTL, AutoRefresh: true})
		require.NoError(t, err)
		defer warm.Release(ctx)
		p.SetLatency(300 * time.Millisecond)
		jctx, cancel := context.WithTimeout(ctx, 150*time.Millisecond)
		_, err = two.AcquireWithOptions(jctx, auto)
		cancel()
		require.ErrorIs(t, err, context.DeadlineExceeded)
		p.SetLatency(0)
		// The join lands, storing the limit; the Locker's janitor then
		// deletes its key.
		testkit.AwaitKeys(t, admin, semPrefix+"ambiguous/n", 1)
		testkit.AwaitKeys(t, admin, semPrefix+"ambiguous/q/", 0)
		three, err := other.Semaphore("ambiguous", 3)
		require.NoError(t, err)
		lk, ok, err := three.TryAcquire(ctx, 5*time.Second)
		require.NoError(t, err, "nobody uses the name: a new limit is stored")
		require.True(t, ok)
		require.NoError(t, lk.Release(ctx))
	})
	require.Zero(t, testkit.CountKeys(t, admin, queue))
}
