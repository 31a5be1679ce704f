package embedtest_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/leasekit/leasekit/embedtest"
)

// BenchmarkStart1 measures starting and closing a single-member cluster.
// Besides ns/op (start plus close) it reports the median and worst start
// and the median close, in milliseconds.
func BenchmarkStart1(b *testing.B) { benchmarkStart(b, 1) }

// BenchmarkStart3 is BenchmarkStart1 for a three-member cluster.
func BenchmarkStart3(b *testing.B) { benchmarkStart(b, 3) }

func benchmarkStart(b *testing.B, members int) {
	ctx := context.Background()
	var starts, closes []time.Duration
	for b.Loop() {
		t0 := time.Now()
		c, err := embedtest.Start(ctx, embedtest.WithMembers(members))
		if err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if err := c.Close(); err != nil {
			b.Fatal(err)
		}
		starts = append(starts, t1.Sub(t0))
		closes = append(closes, time.Since(t1))
	}
	b.ReportMetric(millis(median(starts)), "start-p50-ms")
	b.ReportMetric(millis(slices.Max(starts)), "start-max-ms")
	b.ReportMetric(millis(median(closes)), "close-p50-ms")
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func millis(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
