package ratelimit_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/leasekit/leasekit/embedtest"
	"github.com/leasekit/leasekit/ratelimit"
)

// unlimited never denies in a benchmark, so that every call is a write.
var unlimited = ratelimit.PerSecond(100_000_000)

// BenchmarkAllowExact measures allowed calls in exact mode: one
// compare-and-swap per call, on one key (calls on a key are serialised
// anyway, by etcd's revision check) and on a key per goroutine, beside a
// plain Put from one goroutine measured in the same run.
func BenchmarkAllowExact(b *testing.B) {
	for _, fsync := range []bool{false, true} {
		c := embedtest.New(b, embedtest.WithFsync(fsync))
		ctx := context.Background()
		l := newLimiter(b, c.Client(), "bench", unlimited, ratelimit.WithBatchWindow(0))
		b.Run(fmt.Sprintf("fsync=%v/raw-put-baseline", fsync), func(b *testing.B) {
			for b.Loop() {
				if _, err := c.Client().Put(ctx, "baseline", "v"); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("fsync=%v/one-key", fsync), func(b *testing.B) {
			rev0 := revision(b, ctx, c.Client())
			for b.Loop() {
				if _, err := l.Allow(ctx, "one"); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(revision(b, ctx, c.Client())-rev0)/float64(b.N), "writes/op")
		})
		b.Run(fmt.Sprintf("fsync=%v/key-per-goroutine", fsync), func(b *testing.B) {
			b.SetParallelism(16)
			var mu sync.Mutex
			id := 0
			b.RunParallel(func(pb *testing.PB) {
				mu.Lock()
				key := fmt.Sprint("k", id)
				id++
				mu.Unlock()
				for pb.Next() {
					if _, err := l.Allow(ctx, key); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkAllowDenied measures a denial: it is answered from the cached
// bucket state without contacting etcd.
func BenchmarkAllowDenied(b *testing.B) {
	c := embedtest.New(b)
	ctx := context.Background()
	l := newLimiter(b, c.Client(), "bench-denied", ratelimit.PerHour(1), ratelimit.WithBatchWindow(0))
	if _, err := l.Allow(ctx, "k"); err != nil {
		b.Fatal(err)
	}
	rev0 := revision(b, ctx, c.Client())
	for b.Loop() {
		r, err := l.Allow(ctx, "k")
		if err != nil || r.Allowed != 0 {
			b.Fatal(r, err)
		}
	}
	b.ReportMetric(float64(revision(b, ctx, c.Client())-rev0)/float64(b.N), "writes/op")
}

// BenchmarkShared5000 is the high-rate scenario: 4 instances, each with its
// own client and 8 goroutines calling Wait in a loop, share 5,000/s on one
// key for 3s, starting from a full bucket. It runs once whatever b.N is
// (use -benchtime=1x) and reports utilisation (permits over Burst + Rate ×
// 3s), etcd writes per permit (store revisions, so lease grants are not
// counted), and the worst overshoot over Burst + Rate × t for windows t
// from 1ms to 3s, in percent and in events.
func BenchmarkShared5000(b *testing.B) {
	for _, mode := range []struct {
		name  string
		fsync bool
		opts  []ratelimit.Option
	}{
		{"batched-default/fsync=false", false, nil},
		{"batched-default/fsync=true", true, nil},
		{"exact/fsync=false", false, []ratelimit.Option{ratelimit.WithBatchWindow(0)}},
	} {
		b.Run(mode.name, func(b *testing.B) {
			c := embedtest.New(b, embedtest.WithFsync(mode.fsync))
			st := sharedScenario(b, c, mode.opts)
			b.ReportMetric(100*st.utilisation, "util_%")
			b.ReportMetric(st.writesPerPermit, "writes/permit")
			b.ReportMetric(100*st.overshoot, "overshoot_%")
			b.ReportMetric(float64(st.maxExcess), "overshoot_events")
			b.ReportMetric(float64(st.permits)/3, "permits/s")
		})
	}
}

func sharedScenario(b *testing.B, c *embedtest.Cluster, opts []ratelimit.Option) stats {
	const (
		nInstances = 4
		workers    = 8
		span       = 3 * time.Second
	)
	lim := ratelimit.PerSecond(5000)
	ls := instances(b, c, nInstances, fmt.Sprint("shared-", b.Name()), lim, opts...)
	bg := context.Background()
	for _, l := range ls {
		// Read the stored limit first, outside the measured span.
		if _, err := l.Allow(bg, "warm-up"); err != nil {
			b.Fatal(err)
		}
	}
	rev0 := revision(b, bg, c.Client())
	ctx, cancel := context.WithTimeout(bg, span)
	defer cancel()
	start := time.Now()
	var mu sync.Mutex
	var all []time.Duration
	var wg sync.WaitGroup
	for _, l := range ls {
		for range workers {
			wg.Go(func() {
				var mine []time.Duration
				for l.Wait(ctx, "k") == nil {
					if t := time.Since(start); t < span {
						mine = append(mine, t)
					}
				}
				mu.Lock()
				all = append(all, mine...)
				mu.Unlock()
			})
		}
	}
	wg.Wait()
	writes := revision(b, bg, c.Client()) - rev0
	return measure(all, lim, span, writes)
}

// BenchmarkMiddleware measures the middleware's cost per request beside
// the same handler bare, all in one process with no network: a request
// allowed from tokens held in a batch (the common case for a busy key),
// allowed with one compare-and-swap each (exact mode), and denied from
// the cached bucket state. Each op serves one request into a fresh
// httptest.ResponseRecorder.
func BenchmarkMiddleware(b *testing.B) {
	c := embedtest.New(b)
	ctx := context.Background()
	req := httptest.NewRequest(http.MethodGet, "/items", nil)
	req.Header.Set("X-API-Key", "k")
	run := func(b *testing.B, h http.Handler, want int) {
		b.ReportAllocs()
		for b.Loop() {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != want {
				b.Fatalf("status %d, want %d", rec.Code, want)
			}
		}
	}
	b.Run("bare", func(b *testing.B) { run(b, ok, http.StatusOK) })
	for _, tc := range []struct {
		name string
		lim  ratelimit.Limit
		opts []ratelimit.Option
		want int
	}{
		{"allowed-batched", unlimited, nil, http.StatusOK},
		{"allowed-exact", unlimited, []ratelimit.Option{ratelimit.WithBatchWindow(0)}, http.StatusOK},
		{"denied", ratelimit.PerHour(1), nil, http.StatusTooManyRequests},
	} {
		b.Run(tc.name, func(b *testing.B) {
			l := newLimiter(b, c.Client(), "bench-mw-"+tc.name, tc.lim, tc.opts...)
			if _, err := l.Allow(ctx, "k"); err != nil { // read the limit; empty the 1/h bucket
				b.Fatal(err)
			}
			mw, err := ratelimit.NewMiddleware(l, byAPIKey)
			if err != nil {
				b.Fatal(err)
			}
			run(b, mw(ok), tc.want)
		})
	}
}
