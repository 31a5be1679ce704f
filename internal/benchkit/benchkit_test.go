package benchkit_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/leasekit/leasekit/embedtest"
	"github.com/leasekit/leasekit/internal/benchkit"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(benchkit.Main(m), embedtest.LeakOptions()...) }

func TestSummarize(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want benchkit.Spread
	}{
		{nil, benchkit.Spread{}},
		{[]float64{7}, benchkit.Spread{N: 1, Min: 7, Q1: 7, Median: 7, Q3: 7, Max: 7}},
		{[]float64{5, 1, 4, 2, 3}, benchkit.Spread{N: 5, Min: 1, Q1: 2, Median: 3, Q3: 4, Max: 5}},
		{[]float64{4, 3, 2, 1}, benchkit.Spread{N: 4, Min: 1, Q1: 1.75, Median: 2.5, Q3: 3.25, Max: 4}},
	} {
		require.Equal(t, tc.want, benchkit.Summarize(tc.in), "%v", tc.in)
	}
}

func TestPercentile(t *testing.T) {
	var ds []time.Duration
	for i := 10; i >= 1; i-- {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	require.Equal(t, 5*time.Millisecond, benchkit.Percentile(ds, 50))
	require.Equal(t, 10*time.Millisecond, benchkit.Percentile(ds, 99))
	require.Equal(t, 1*time.Millisecond, benchkit.Percentile(ds, 1))
	require.Equal(t, 10*time.Millisecond, ds[0], "the input is not sorted in place")
	require.Zero(t, benchkit.Percentile(nil, 50))
}

func TestJain(t *testing.T) {
	require.Equal(t, 1.0, benchkit.Jain([]int{3, 3, 3, 3}))
	require.Equal(t, 0.25, benchkit.Jain([]int{8, 0, 0, 0}))
	require.Zero(t, benchkit.Jain([]int{0, 0}))
}

// TestPairsAlternate checks the order rounds run in (one warm-up each,
// then a b, b a, a b) and that each round is filed under its side.
func TestPairsAlternate(t *testing.T) {
	var order []string
	side := func(name string, score float64) benchkit.Runner {
		return func(context.Context) (benchkit.Round, error) {
			order = append(order, name)
			return benchkit.Round{Score: score}, nil
		}
	}
	probes := 0
	as, bs, err := benchkit.Pairs(t.Context(), 3, side("a", 6), side("b", 2), func(context.Context) error {
		probes++
		return nil
	})
	require.NoError(t, err)
	require.Equal(t, []string{"a", "b", "a", "b", "b", "a", "a", "b"}, order)
	require.Equal(t, 3, probes)
	require.Len(t, as, 3)
	require.Len(t, bs, 3)
	require.Equal(t, []float64{3, 3, 3}, benchkit.Ratios(as, bs))
}

// TestPairsUnderDrift is why ratios are paired: on a machine that slows
// down round by round, running all of A, then all of B, credits A with
// the drift; pairs still give A/B = 2, the drift within a pair showing as
// the spread.
func TestPairsUnderDrift(t *testing.T) {
	const drift = 0.97 // every round finds the machine 3% slower
	speed := 1.0
	side := func(base float64) benchkit.Runner {
		return func(context.Context) (benchkit.Round, error) {
			speed *= drift
			return benchkit.Round{Score: base * speed}, nil
		}
	}
	a, b := side(2), side(1)
	as, bs, err := benchkit.Pairs(t.Context(), 10, a, b, nil)
	require.NoError(t, err)
	r := benchkit.Summarize(benchkit.Ratios(as, bs))
	require.InDelta(t, 2, r.Median, 0.01)
	require.InDelta(t, 2*drift, r.Min, 0.001)
	require.InDelta(t, 2/drift, r.Max, 0.001)

	// One after the other, the same drift makes A look 2.7 times B.
	speed = 1.0
	var sumA, sumB float64
	for range 10 {
		r, _ := a(t.Context())
		sumA += r.Score
	}
	for range 10 {
		r, _ := b(t.Context())
		sumB += r.Score
	}
	require.Greater(t, sumA/sumB, 2.6)
}

// TestCompare runs the whole harness once, small, on an embedded etcd:
// both crews, a pair of rounds, the ceiling probe and the table.
func TestCompare(t *testing.T) {
	srv := benchkit.Embedded(false).StartTB(t)
	wl := benchkit.Workload{Workers: 3, Hold: time.Millisecond, Exclusive: true}
	c, err := benchkit.Compare(t.Context(), srv, "mutex, 3 workers", benchkit.LeasekitMutex(true),
		benchkit.ConcurrencyMutex(false), wl, benchkit.Options{Pairs: 1, Round: 100 * time.Millisecond, Probes: 3})
	require.NoError(t, err)
	require.Len(t, c.RoundsA, 1)
	require.Len(t, c.RoundsB, 1)
	a := benchkit.Sum(c.RoundsA)
	require.Positive(t, a.Takes)
	require.Zero(t, a.Errs)
	require.Len(t, c.Ceiling.Event, 3)
	require.Equal(t, 1, c.Ratio().N)
	require.Zero(t, a.FsyncsPerTake, "fsync off: etcd observes no WAL fsync")

	// The ideal lock admits in the order the puts committed.
	i, err := benchkit.Compare(t.Context(), srv, "ideal", benchkit.IdealMutex(), benchkit.LeasekitMutex(true), wl,
		benchkit.Options{Pairs: 1, Round: 100 * time.Millisecond, Probes: -1})
	require.NoError(t, err)
	require.Positive(t, i.RoundsA[0].Takes)
	require.Zero(t, i.RoundsA[0].Errs)

	h, err := benchkit.CompareHandovers(t.Context(), srv, "election", benchkit.LeasekitElection(),
		benchkit.ConcurrencyElection(), benchkit.Options{Pairs: 1, Handovers: 2, Probes: -1})
	require.NoError(t, err)
	require.Len(t, h.RoundsA[0].Handoffs, 2)

	var out bytes.Buffer
	benchkit.PrintTable(&out, map[string]string{srv.Name: srv.About}, []*benchkit.Comparison{c, h})
	require.Contains(t, out.String(), "| mutex, 3 workers | fsync-off | leasekit: ")
	require.Contains(t, out.String(), "| election | fsync-off | leasekit: p50 ")
	require.Equal(t, 2, strings.Count(out.String(), "| workload |"))
}

// TestMeasure counts the calls of an uncontended cycle: one Txn to join
// and one to leave.
func TestMeasure(t *testing.T) {
	srv := benchkit.Embedded(false).StartTB(t)
	c, err := benchkit.Measure(t.Context(), srv, benchkit.LeasekitMutex(true), benchkit.Workload{Workers: 1}, 100*time.Millisecond)
	require.NoError(t, err)
	require.Positive(t, c.Takes)
	require.InDelta(t, 2, c.Calls["KV/Txn"], 0.01, "%v", c)
}

// TestFsyncOnSyncs checks that the headline server really syncs: etcd
// observes its WAL fsync metric only for a real fsync.
func TestFsyncOnSyncs(t *testing.T) {
	srv := benchkit.Embedded(true).StartTB(t)
	before, ok := srv.WALFsyncs(t.Context())
	require.True(t, ok)
	cli, err := srv.NewClient()
	require.NoError(t, err)
	for range 3 {
		_, err := cli.Put(t.Context(), srv.Prefix+"x", "")
		require.NoError(t, err)
	}
	after, _ := srv.WALFsyncs(t.Context())
	require.GreaterOrEqual(t, after-before, 3.0)
}
