package etcdlock_test

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/leasekit/leasekit/embedtest"
	"github.com/leasekit/leasekit/etcdlock"
	"github.com/leasekit/leasekit/internal/testkit"
)

// watchEvents reads etcd's count of events sent to watchers from the
// embedded server's metrics.
func watchEvents(b *testing.B) float64 {
	mfs, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		b.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "etcd_debugging_mvcc_events_total" {
			var sum float64
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
			return sum
		}
	}
	b.Fatal("etcd_debugging_mvcc_events_total not found")
	return 0
}

// BenchmarkWaiters1000 queues 1,000 waiters behind one holder, then lets
// the lock pass down the whole queue, and reports the watch events etcd
// sent per handoff: it must not grow with the queue.
func BenchmarkWaiters1000(b *testing.B) {
	const waiters = 1000
	const clients = 10
	c := embedtest.New(b)
	ctx := context.Background()
	lockers := make([]*etcdlock.Locker, clients)
	for i := range lockers {
		cli, err := c.NewClient()
		if err != nil {
			b.Fatal(err)
		}
		if lockers[i], err = etcdlock.New(cli); err != nil {
			b.Fatal(err)
		}
		defer lockers[i].Close()
	}
	b.ResetTimer()
	var events, elapsed float64
	for range b.N {
		first, err := lockers[0].LockWithOptions(ctx, etcdlock.LockOptions{Key: "crowd", TTL: time.Minute, AutoRefresh: true})
		if err != nil {
			b.Fatal(err)
		}
		var queued, wg sync.WaitGroup
		queued.Add(waiters)
		for i := range waiters {
			wg.Add(1)
			go func() {
				defer wg.Done()
				l := lockers[i%clients]
				go queued.Done() // counted once the waiter is on its way
				lk, err := l.LockWithOptions(ctx, etcdlock.LockOptions{Key: "crowd", TTL: time.Minute, AutoRefresh: true})
				if err != nil {
					b.Error(err)
					return
				}
				lk.Release(ctx)
			}()
		}
		queued.Wait()
		// On a client of its own, closed before the handoffs, so that its
		// watch counts none of their events.
		waitCli, err := c.NewClient()
		if err != nil {
			b.Fatal(err)
		}
		testkit.AwaitKeysAtLeast(b, waitCli, etcdlock.DefaultPrefix, waiters+1)
		waitCli.Close()
		before := watchEvents(b)
		start := time.Now()
		first.Release(ctx)
		wg.Wait()
		elapsed += time.Since(start).Seconds()
		events += watchEvents(b) - before
	}
	b.ReportMetric(events/float64(b.N*waiters), "events/handoff")
	b.ReportMetric(float64(b.N*waiters)/elapsed, "handoffs/s")
}

// BenchmarkHolds10000 takes 10,000 AutoRefresh locks on distinct names
// with one Locker and reports the memory and goroutines each hold costs.
// They share one lease, so one keepalive serves them all.
func BenchmarkHolds10000(b *testing.B) {
	const holds = 10000
	c := embedtest.New(b)
	ctx := context.Background()
	l, err := etcdlock.New(c.Client())
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	b.ResetTimer()
	for range b.N {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		g0 := runtime.NumGoroutine()
		locks := make([]etcdlock.Lock, holds)
		for i := range locks {
			locks[i], err = l.LockWithOptions(ctx, etcdlock.LockOptions{Key: fmt.Sprint("h", i), TTL: 30 * time.Second, AutoRefresh: true})
			if err != nil {
				b.Fatal(err)
			}
		}
		time.Sleep(100 * time.Millisecond) // let every self-watch start
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/holds, "heap-B/hold")
		b.ReportMetric(float64(runtime.NumGoroutine()-g0)/holds, "goroutines/hold")
		for _, lk := range locks {
			lk.Release(ctx)
		}
	}
}
