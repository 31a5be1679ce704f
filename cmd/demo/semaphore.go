package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/leasekit/leasekit/etcdlock"
)

// runSemaphore caps concurrent calls across replicas with a Semaphore,
// then runs a job under Manager.WithLock and TryWithLock, and shows
// WithLock cancelling its function when the lock is lost.
func runSemaphore(ctx context.Context, e *env) error {
	sc := e.scope()
	defer sc.close()
	const name = "partner-api-calls"
	const limit = 3
	const replicas = 3
	s := e.size
	e.out.say(`%d replicas share the semaphore %q with limit %d: at most %d calls to
a partner API at a time, whichever replicas make them. %d jobs spread over
the replicas each take a permit, call for %v and release it. Waiters are
served in the order they asked.`, replicas, name, limit, limit, s.semJobs, s.semHold)

	lockers := make([]*etcdlock.Locker, replicas)
	for i := range lockers {
		cli, err := sc.client()
		if err != nil {
			return err
		}
		l, err := sc.locker(cli)
		if err != nil {
			return err
		}
		lockers[i] = l
	}

	var inFlight, most atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, s.semJobs)
	start := time.Now()
	for j := range s.semJobs {
		r := j % replicas
		sem, err := lockers[r].Semaphore(name, limit)
		if err != nil {
			return err
		}
		wg.Go(func() {
			p, err := sem.AcquireWithOptions(ctx, etcdlock.LockOptions{TTL: 10 * time.Second, AutoRefresh: true})
			if err != nil {
				errs <- err
				return
			}
			n := inFlight.Add(1)
			for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
			}
			e.out.event("job %d on %s has a permit (token %d): %d in flight", j+1, replica(r), p.Token(), n)
			work(ctx, s.semHold)
			inFlight.Add(-1)
			if err := p.Release(ctx); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	took := time.Since(start)
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	rounds := (s.semJobs + limit - 1) / limit
	e.out.say("%d jobs in %s: at most %d in flight at once; %d rounds of %v is the least it can take.",
		s.semJobs, ms(took), most.Load(), rounds, s.semHold)
	if most.Load() > limit {
		return fmt.Errorf("%d calls in flight at once; the limit is %d", most.Load(), limit)
	}
	e.sum.add("semaphore", fmt.Sprintf("limit %d, %d jobs of %v on %d replicas", limit, s.semJobs, s.semHold, replicas),
		fmt.Sprintf("at most %d in flight; %s in all (least possible %v)", most.Load(), ms(took), time.Duration(rounds)*s.semHold))

	return runManager(ctx, e, sc, lockers)
}

// runManager shows the lock Manager (the API of the "Use Distributed Lock
// Pattern" decision record; see etcdlock.DistributedLock): WithLock runs a
// function under a lock kept alive for it, TryWithLock skips when the lock
// is taken, and WithLock cancels the function when the lock is lost.
func runManager(ctx context.Context, e *env, sc *scope, lockers []*etcdlock.Locker) error {
	const job = "schema-migration"
	e.out.say(`
Manager.WithLock runs a function under a lock that is kept alive while it
runs; TryWithLock runs it only if the lock is free.`)
	r1, r2 := etcdlock.NewManager(lockers[0]), etcdlock.NewManager(lockers[1])
	err := r1.WithLock(ctx, job, 5*time.Second, func(ctx context.Context) error {
		e.out.event("r1 runs %q under WithLock", job)
		ran, err := r2.TryWithLock(ctx, job, 5*time.Second, func(context.Context) error {
			return errors.New("r2 ran while r1 held the lock")
		})
		e.out.event("meanwhile r2's TryWithLock: ran=%v, err=%v: r2 skips instead of waiting", ran, err)
		return err
	})
	if err != nil {
		return err
	}
	e.out.event("r1's WithLock returned nil: the lock is released")
	ran, err := r2.TryWithLock(ctx, job, 5*time.Second, func(context.Context) error {
		e.out.event("r2 runs %q under TryWithLock", job)
		return nil
	})
	if err != nil || !ran {
		return fmt.Errorf("r2's TryWithLock after the release: ran=%v, err=%v", ran, err)
	}

	e.out.say(`
If the lock is lost while the function runs, its ctx is cancelled (cause
ErrLockLost) before anyone else can take the lock, and WithLock returns
an error. Here r3 holds the lock with a %v TTL and is cut off from etcd.`, e.size.faultTTL)
	cli, proxy, err := sc.cuttableClient(2)
	if err != nil {
		return err
	}
	l3, err := sc.locker(cli)
	if err != nil {
		return err
	}
	r3 := etcdlock.NewManager(l3)
	var cutAt, endAt time.Time
	stop := func() {}
	err = r3.WithLock(ctx, job, e.size.faultTTL, func(ctx context.Context) error {
		e.out.event("r3 runs %q; the network between r3 and etcd is cut", job)
		cutAt = time.Now()
		proxy.Cut()
		stop = e.out.progress("r3's function waits for its ctx", nil)
		<-ctx.Done()
		endAt = time.Now()
		stop()
		e.out.event("r3's function sees its ctx end %s after the cut: %v", ms(endAt.Sub(cutAt)), context.Cause(ctx))
		proxy.Heal()
		return nil
	})
	stop()
	if !errors.Is(err, etcdlock.ErrLockLost) {
		return fmt.Errorf("WithLock after a loss returned %v; want ErrLockLost", err)
	}
	e.out.event("r3's WithLock returned: %v", err)
	e.sum.add("semaphore", "Manager.WithLock, holder cut off",
		fmt.Sprintf("fn's ctx ended %s after the cut; WithLock returned ErrLockLost", ms(endAt.Sub(cutAt))))
	return nil
}
