package benchkit

import (
	"math"
	"slices"
	"time"
)

// Spread summarises a sample: its median, quartiles and extremes. Pair
// ratios are reported this way, so that one slow round shows as a wide
// spread rather than moving the figure.
type Spread struct {
	N                        int
	Min, Q1, Median, Q3, Max float64
}

// Summarize returns the spread of xs. The quartiles interpolate linearly
// between order statistics, as R's default and numpy's do; an empty xs
// gives the zero Spread.
func Summarize(xs []float64) Spread {
	if len(xs) == 0 {
		return Spread{}
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return Spread{
		N: len(s), Min: s[0], Max: s[len(s)-1],
		Q1: quantile(s, 0.25), Median: quantile(s, 0.5), Q3: quantile(s, 0.75),
	}
}

// quantile of sorted, by linear interpolation between order statistics.
func quantile(sorted []float64, q float64) float64 {
	pos := q * float64(len(sorted)-1)
	lo := int(math.Floor(pos))
	hi := int(math.Ceil(pos))
	return sorted[lo] + (sorted[hi]-sorted[lo])*(pos-float64(lo))
}

// Percentile returns the p-th percentile of ds (0 < p <= 100) by the
// nearest-rank method: a duration that was observed. ds need not be
// sorted and is not changed; an empty ds gives 0.
func Percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := int(math.Ceil(p / 100 * float64(len(s))))
	return s[min(max(rank, 1), len(s))-1]
}

// Jain returns Jain's fairness index of xs: 1 when all are equal, 1/len(xs)
// when one got everything, 0 for no data.
func Jain(xs []int) float64 {
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

// Mean returns the mean of ds, or 0 for none.
func Mean(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	var sum time.Duration
	for _, d := range ds {
		sum += d
	}
	return sum / time.Duration(len(ds))
}

// Ms is d in milliseconds.
func Ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
