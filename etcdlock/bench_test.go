package etcdlock_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/leasekit/leasekit/embedtest"
	"github.com/leasekit/leasekit/etcdlock"
)

// A contender acquires the lock and returns the function that releases it.
type contender func(ctx context.Context) (release func() error, err error)

// benchContended runs workers that each loop acquire, hold, release on one
// name, as in DESIGN.md's anchor (8 workers, hold 1ms, own clients), and
// reports acquisitions/s, handoff latency and Jain's fairness index.
func benchContended(b *testing.B, workers int, hold time.Duration, mk func(cli *clientv3.Client) contender) {
	c := embedtest.New(b)
	ctx := context.Background()
	cs := make([]contender, workers)
	for i := range cs {
		cli, err := c.NewClient()
		if err != nil {
			b.Fatal(err)
		}
		cs[i] = mk(cli)
	}
	var (
		remaining   atomic.Int64
		lastRelease atomic.Int64 // unix nanos of the latest release
		mu          sync.Mutex
		handoffs    []time.Duration
		counts      = make([]int, workers)
		wg          sync.WaitGroup
	)
	remaining.Store(int64(b.N))
	b.ResetTimer()
	start := time.Now()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for remaining.Add(-1) >= 0 {
				release, err := cs[w](ctx)
				if err != nil {
					b.Error(err)
					return
				}
				now := time.Now()
				if prev := lastRelease.Load(); prev != 0 {
					mu.Lock()
					handoffs = append(handoffs, now.Sub(time.Unix(0, prev)))
					mu.Unlock()
				}
				counts[w]++
				time.Sleep(hold)
				lastRelease.Store(time.Now().UnixNano())
				if err := release(); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "acq/s")
	if len(handoffs) > 0 {
		slices.Sort(handoffs)
		b.ReportMetric(ms(handoffs[len(handoffs)/2]), "handoff-p50-ms")
		b.ReportMetric(ms(handoffs[len(handoffs)*99/100]), "handoff-p99-ms")
	}
	b.ReportMetric(jain(counts), "jain")
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// jain is Jain's fairness index of xs: 1 when all are equal.
func jain(xs []int) float64 {
	var sum, sq float64
	for _, x := range xs {
		sum += float64(x)
		sq += float64(x) * float64(x)
	}
	if sq == 0 {
		return 0
	}
	return sum * sum / (float64(len(xs)) * sq)
}

func leasekitContender(b *testing.B, auto bool) func(*clientv3.Client) contender {
	return func(cli *clientv3.Client) contender {
		l, err := etcdlock.New(cli)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { l.Close() })
		return func(ctx context.Context) (func() error, error) {
			lk, err := l.LockWithOptions(ctx, etcdlock.LockOptions{Key: "bench", TTL: 10 * time.Second, AutoRefresh: auto})
			if err != nil {
				return nil, err
			}
			return func() error { return lk.Release(ctx) }, nil
		}
	}
}

func concurrencyContender(b *testing.B, sessionPerLock bool) func(*clientv3.Client) contender {
	return func(cli *clientv3.Client) contender {
		var shared *concurrency.Session
		if !sessionPerLock {
			s, err := concurrency.NewSession(cli, concurrency.WithTTL(10))
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { s.Close() })
			shared = s
		}
		return func(ctx context.Context) (func() error, error) {
			s := shared
			if sessionPerLock {
				var err error
				if s, err = concurrency.NewSession(cli, concurrency.WithTTL(10)); err != nil {
					return nil, err
				}
			}
			m := concurrency.NewMutex(s, "/bench-concurrency/")
			if err := m.Lock(ctx); err != nil {
				return nil, err
			}
			return func() error {
				err := m.Unlock(ctx)
				if sessionPerLock {
					s.Close()
				}
				return err
			}, nil
		}
	}
}

// BenchmarkContended is DESIGN.md's contended anchor: 8 workers with their
// own clients, one name, hold 1ms. Compare leasekit with
// concurrency.Mutex from the same run.
func BenchmarkContended(b *testing.B) {
	b.Run("impl=leasekit", func(b *testing.B) { benchContended(b, 8, time.Millisecond, leasekitContender(b, true)) })
	b.Run("impl=concurrency", func(b *testing.B) { benchContended(b, 8, time.Millisecond, concurrencyContender(b, false)) })
}

// BenchmarkUncontended is one worker's Lock and Release on a free name.
func BenchmarkUncontended(b *testing.B) {
	for _, bc := range []struct {
		name string
		mk   func(*clientv3.Client) contender
	}{
		{"impl=leasekit/AutoRefresh", leasekitContender(b, true)},
		{"impl=concurrency/shared-session", concurrencyContender(b, false)},
		{"impl=leasekit/own-lease", leasekitContender(b, false)},
		{"impl=concurrency/session-per-lock", concurrencyContender(b, true)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			benchContended(b, 1, 0, bc.mk)
		})
	}
}

var _ = fmt.Sprint

// BenchmarkUncontendedPaired alternates a leasekit AutoRefresh
// Lock+Release with a concurrency.Mutex Lock+Unlock on a shared session,
// op by op on one server, so that both see the same load; it reports each
// one's rate and their ratio.
func BenchmarkUncontendedPaired(b *testing.B) {
	c := embedtest.New(b)
	cli, err := c.NewClient()
	if err != nil {
		b.Fatal(err)
	}
	ours := leasekitContender(b, true)(cli)
	theirs := concurrencyContender(b, false)(cli)
	ctx := context.Background()
	var tOurs, tTheirs time.Duration
	cycle := func(f contender) time.Duration {
		start := time.Now()
		release, err := f(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if err := release(); err != nil {
			b.Fatal(err)
		}
		return time.Since(start)
	}
	b.ResetTimer()
	for i := range b.N {
		if i%2 == 0 {
			tOurs += cycle(ours)
			tTheirs += cycle(theirs)
		} else {
			tTheirs += cycle(theirs)
			tOurs += cycle(ours)
		}
	}
	b.ReportMetric(float64(b.N)/tOurs.Seconds(), "leasekit-acq/s")
	b.ReportMetric(float64(b.N)/tTheirs.Seconds(), "concurrency-acq/s")
	b.ReportMetric(tTheirs.Seconds()/tOurs.Seconds(), "ratio")
}
