package ratelimit

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// FuzzDecodeBucket checks the parser of stored buckets, which reads what
// any etcd client may have written: it never panics, accepts only times
// in [0, maxStoredTime], and what it accepts survives encode and decode.
func FuzzDecodeBucket(f *testing.F) {
	for _, s := range []string{
		"tat=0 now=0", "tat=1700000000000000000 now=1700000000000000000", "tat=4611686018427387904 now=1",
		"tat=4611686018427387905 now=1", "tat=-1 now=0", "tat=+5 now=05", "tat=1now=2", "tat=1  now=2",
		"now=1 tat=2", "tat= now=", "", " ", "tat=9223372036854775807 now=0", "tat=0x10 now=0", "tat=1 now=2 x=3",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, v []byte) {
		b, err := decodeBucket(v)
		if err != nil {
			return
		}
		require.True(t, b.tat >= 0 && b.tat <= maxStoredTime && b.now >= 0 && b.now <= maxStoredTime,
			"decodeBucket(%q) = %+v: out of range", v, b)
		again, err := decodeBucket([]byte(b.encode()))
		require.NoError(t, err, "decodeBucket(encode(%+v))", b)
		require.Equal(t, b, again, "decodeBucket(encode(%+v))", b)
	})
}

// FuzzUnmarshalLimit checks the parser of limits stored with SetLimit or
// by an operator with etcdctl: it never panics, accepts only limits that
// Validate accepts, and what it accepts survives marshal and unmarshal.
func FuzzUnmarshalLimit(f *testing.F) {
	for _, s := range []string{
		`{"rate":100,"period":"1s","burst":100}`, `{"rate":1,"period":"1ns","burst":1}`,
		`{"rate":0,"period":"1s","burst":1}`, `{"rate":1,"period":"-1s","burst":1}`, `{"rate":1,"period":"1.5ns","burst":1}`,
		`{"rate":1e30,"period":"1s","burst":1}`, `{"rate":1,"period":"87600h","burst":2}`, `{"rate":2,"period":"1ns","burst":1}`,
		`{"rate":1,"period":"1s","burst":9223372036854775807}`, `{}`, `null`, `[]`, `{"rate":"1"}`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, v []byte) {
		l, err := unmarshalLimit(v)
		if err != nil {
			return
		}
		require.NoError(t, l.Validate(), "unmarshalLimit(%q) = %v, which Validate rejects", v, l)
		_, err = newParams(l)
		require.NoError(t, err, "newParams(%v)", l)
		again, err := unmarshalLimit([]byte(marshalLimit(l)))
		require.NoError(t, err, "unmarshalLimit(marshalLimit(%v))", l)
		require.Equal(t, l, again, "unmarshalLimit(marshalLimit(%v))", l)
	})
}

// FuzzTake checks GCRA's arithmetic over every valid limit and every
// stored time: taking want tokens succeeds exactly when want are
// available and leaves want fewer; a refusal names the shortest wait after
// which the take succeeds.
func FuzzTake(f *testing.F) {
	f.Add(100, int64(time.Second), 100, int64(0), int64(1_700_000_000_000_000_000), 1)
	f.Add(1, int64(time.Hour), 1, int64(1_700_000_000_000_000_000), int64(1_700_000_000_000_000_000), 1)
	f.Add(3, int64(10), 7, int64(maxStoredTime), int64(maxStoredTime), 7)
	f.Add(1, int64(MaxRefill), 1, int64(maxStoredTime), int64(0), 1)
	f.Fuzz(func(t *testing.T, rate int, period int64, burst int, tat, now int64, want int) {
		p, err := newParams(Limit{Rate: rate, Period: time.Duration(period), Burst: burst})
		if err != nil || tat < 0 || tat > maxStoredTime || now < 0 || now > maxStoredTime || want < 1 || want > burst {
			return
		}
		avail := p.available(tat, now)
		require.LessOrEqual(t, avail, int64(burst), "%v: more tokens available than the burst", p.limit)
		ok, newTat, wait := p.take(tat, now, want)
		require.Equal(t, avail >= int64(want), ok, "%v tat=%d now=%d: take(%d) with %d available", p.limit, tat, now, want, avail)
		if ok {
			require.Zero(t, wait, "take(%d) = %v, %d, %d", want, ok, newTat, wait)
			require.Greater(t, newTat, tat, "take(%d) = %v, %d, %d", want, ok, newTat, wait)
			require.Equal(t, min(avail, int64(burst))-int64(want), p.available(newTat, now), "%v: %d available, took %d", p.limit, avail, want)
			return
		}
		require.Positive(t, wait, "a refusal's wait")
		ok, _, _ = p.take(tat, now+wait, want)
		require.True(t, ok, "%v tat=%d now=%d: still refused after the wait %d", p.limit, tat, now, wait)
		ok, _, _ = p.take(tat, now+wait-1, want)
		require.False(t, ok, "%v tat=%d now=%d: the wait %d is longer than needed", p.limit, tat, now, wait)
	})
}
