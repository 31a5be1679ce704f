package etcdlock_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/leasekit/leasekit/internal/benchkit"
)

// The comparisons with etcd's own recipes. Each runs on every server of
// benchkit.Targets (embedded etcd with fsync on, the headline, and off;
// a real etcd when $LEASEKIT_BENCH_ENDPOINTS is set), in b.N pairs of
// rounds that alternate leasekit and the reference; TestMain prints them
// as a table at the end. make bench runs them with 10 pairs.

// contended is DESIGN.md's anchor workload: 8 workers with clients of
// their own on one name, each hold 1ms.
var contended = benchkit.Workload{Workers: 8, Hold: time.Millisecond, Exclusive: true}

// uncontended is one worker's take and release, back to back.
var uncontended = benchkit.Workload{Workers: 1, Exclusive: true}

// BenchmarkContended is the anchor workload on the mutex, beside
// concurrency.Mutex. It also gives the acquisitions as a fraction of the
// server's ceiling, measured between pairs.
func BenchmarkContended(b *testing.B) {
	benchkit.Bench(b, "mutex, 8 workers, hold 1ms", benchkit.LeasekitMutex(true), benchkit.ConcurrencyMutex(false),
		contended, benchkit.Options{})
}

// BenchmarkContendedIdeal is the anchor workload on the mutex, beside
// benchkit.IdealMutex: a lock that makes only the etcd calls every hold
// needs (a committed put to line up, a watch of the key ahead, a
// committed delete to release) and knows the rest for free. Its rate is
// the ceiling of this workload on this server, with the put and the
// delete of each cycle serialised as etcd serialises them.
func BenchmarkContendedIdeal(b *testing.B) {
	benchkit.Bench(b, "mutex, 8 workers, hold 1ms, vs an ideal lock", benchkit.LeasekitMutex(true), benchkit.IdealMutex(),
		contended, benchkit.Options{})
}

// BenchmarkUncontended is one worker's Lock and Release on a free name:
// AutoRefresh beside concurrency.Mutex on a shared session, and the ADR's
// Lock(ctx, key, ttl), a lease per lock, beside a new session per lock.
func BenchmarkUncontended(b *testing.B) {
	o := benchkit.Options{Round: time.Second}
	b.Run("autorefresh", func(b *testing.B) {
		benchkit.Bench(b, "mutex cycle, AutoRefresh vs shared session", benchkit.LeasekitMutex(true),
			benchkit.ConcurrencyMutex(false), uncontended, o)
	})
	b.Run("own-lease", func(b *testing.B) {
		benchkit.Bench(b, "mutex cycle, Lock(ctx, key, ttl) vs session per lock", benchkit.LeasekitMutex(false),
			benchkit.ConcurrencyMutex(true), uncontended, o)
	})
}

// BenchmarkSemaphoreContended is the anchor workload on semaphores of 1, 2
// and 4 permits, beside concurrency.Mutex: etcd has no semaphore recipe,
// and a mutex is a semaphore of 1.
func BenchmarkSemaphoreContended(b *testing.B) {
	for _, n := range []int{1, 2, 4} {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			wl := contended
			wl.Exclusive = n == 1
			benchkit.Bench(b, fmt.Sprintf("semaphore n=%d, 8 workers, hold 1ms", n), benchkit.LeasekitSemaphore(n),
				benchkit.ConcurrencyMutex(false), wl, benchkit.Options{})
		})
	}
}

// BenchmarkSemaphoreUncontended is one worker's Acquire and Release of a
// semaphore of 2, beside concurrency.Mutex.
func BenchmarkSemaphoreUncontended(b *testing.B) {
	benchkit.Bench(b, "semaphore n=2 cycle, AutoRefresh", benchkit.LeasekitSemaphore(2), benchkit.ConcurrencyMutex(false),
		uncontended, benchkit.Options{Round: time.Second})
}

// BenchmarkRWMutexContended is the anchor workload on the RWMutex, one
// take in ten a write, beside etcd's experimental recipe.RWMutex.
func BenchmarkRWMutexContended(b *testing.B) {
	wl := benchkit.Workload{Workers: 8, Hold: time.Millisecond, WriteEvery: 10}
	benchkit.Bench(b, "rwmutex, 8 workers, hold 1ms, 10% writes", benchkit.LeasekitRWMutex(), benchkit.RecipeRWMutex(),
		wl, benchkit.Options{})
}

// BenchmarkRWMutexReadOnly is 8 workers that only read: readers never
// wait for each other, so this is the cost of RLock and release under load.
func BenchmarkRWMutexReadOnly(b *testing.B) {
	wl := benchkit.Workload{Workers: 8, Hold: time.Millisecond}
	benchkit.Bench(b, "rwmutex, 8 readers, hold 1ms", benchkit.LeasekitRWMutex(), benchkit.RecipeRWMutex(),
		wl, benchkit.Options{})
}

// BenchmarkRWMutexUncontended is one worker's RLock and release, and Lock
// and release.
func BenchmarkRWMutexUncontended(b *testing.B) {
	o := benchkit.Options{Round: time.Second}
	b.Run("read", func(b *testing.B) {
		benchkit.Bench(b, "rwmutex read cycle", benchkit.LeasekitRWMutex(), benchkit.RecipeRWMutex(),
			benchkit.Workload{Workers: 1}, o)
	})
	b.Run("write", func(b *testing.B) {
		benchkit.Bench(b, "rwmutex write cycle", benchkit.LeasekitRWMutex(), benchkit.RecipeRWMutex(),
			benchkit.Workload{Workers: 1, WriteEvery: 1, Exclusive: true}, o)
	})
}

// BenchmarkCycleCost reports what one take and release costs the process:
// gRPC calls by method, heap allocations and goroutines started, for
// leasekit and the reference, uncontended and contended. Against the
// embedded servers the allocations include etcd's own; run it against an
// etcd process ($LEASEKIT_BENCH_ENDPOINTS, or make bench-etcd's) for the
// client's alone:
//
//	LEASEKIT_BENCH_ENDPOINTS=127.0.0.1:32379 go test -run '^$' -bench CycleCost/etcd -benchtime=1x ./etcdlock
func BenchmarkCycleCost(b *testing.B) {
	for _, t := range benchkit.Targets() {
		b.Run(t.Name, func(b *testing.B) {
			srv := t.StartTB(b)
			for _, tc := range []struct {
				name string
				impl benchkit.Impl
				wl   benchkit.Workload
			}{
				{"uncontended", benchkit.LeasekitMutex(true), uncontended},
				{"uncontended", benchkit.ConcurrencyMutex(false), uncontended},
				{"uncontended", benchkit.LeasekitMutex(false), uncontended},
				{"uncontended", benchkit.ConcurrencyMutex(true), uncontended},
				{"contended", benchkit.LeasekitMutex(true), contended},
				{"contended", benchkit.ConcurrencyMutex(false), contended},
			} {
				c, err := benchkit.Measure(b.Context(), srv, tc.impl, tc.wl, time.Second)
				if err != nil {
					b.Fatal(err)
				}
				b.Logf("%s, %s", tc.name, c)
			}
		})
	}
}
