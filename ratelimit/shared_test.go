package ratelimit_test

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
	"github.com/leasekit/leasekit/internal/testkit"
	"github.com/leasekit/leasekit/ratelimit"
)

// instances returns n limiters of one name, each on its own client, as if
// in n processes.
func instances(t testing.TB, c *embedtest.Cluster, n int, name string, lim ratelimit.Limit, opts ...ratelimit.Option) []*ratelimit.Limiter {
	t.Helper()
	ls := make([]*ratelimit.Limiter, n)
	for i := range ls {
		cli, err := c.NewClient()
		require.NoError(t, err)
		ls[i] = newLimiter(t, cli, name, lim, opts...)
	}
	return ls
}

// TestFourInstancesExact drives four instances on their own clients
// against one key, all at once, on a shared clock that moves in steps of
// 7ms. After each step every instance has been denied, so the bucket is
// empty: the total allowed must then be exactly Burst + elapsed/interval,
// never more, and etcd must have seen one write per allowed event.
func TestFourInstancesExact(t *testing.T) {
	c := embedtest.New(t)
	ctx := testkit.Context(t)
	clk := newFakeClock()
	lim := ratelimit.Limit{Rate: 100, Period: time.Second, Burst: 20} // one per 10ms
	ls := instances(t, c, 4, "exact", lim, ratelimit.WithClock(clk.Now), ratelimit.WithBatchWindow(0))

	rev0 := revision(t, ctx, c.Client())
	total := 0
	const step = 7 * time.Millisecond
	for s := range 40 {
		var mu sync.Mutex
		var wg sync.WaitGroup
		for _, l := range ls {
			wg.Go(func() {
				for {
					r, err := l.Allow(ctx, "k")
					if !assert.NoError(t, err) {
						return
					}
					if r.Allowed == 0 {
						assert.Positive(t, r.RetryAfter, "a denial's RetryAfter")
						return
					}
					mu.Lock()
					total++
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		elapsed := time.Duration(s) * step
		require.Equal(t, lim.Burst+int(elapsed/lim.Interval()), total, "after %v", elapsed)
		clk.Advance(step)
	}
	require.Equal(t, int64(total), revision(t, ctx, c.Client())-rev0, "one write per allowed event, none for denials or conflicts")
}

// TestBatchedFourInstances simulates the high-rate case on a shared clock
// in 1ms steps: four instances with default options share 5,000/s and each
// offers 5 calls per millisecond (20,000/s in all). It checks the figures
// the package documents: utilisation, writes per permit and overshoot.
func TestBatchedFourInstances(t *testing.T) {
	c := embedtest.New(t)
	ctx := testkit.Context(t)
	clk := newFakeClock()
	lim := ratelimit.PerSecond(5000)
	ls := instances(t, c, 4, "batched", lim, ratelimit.WithClock(clk.Now))

	const steps, perStep = 2000, 5
	var times []time.Duration // simulated time of each allowed event
	rev0 := revision(t, ctx, c.Client())
	for s := range steps {
		now := time.Duration(s) * time.Millisecond
		for i := range ls {
			l := ls[(s+i)%len(ls)] // take turns at going first
			for range perStep {
				r, err := l.Allow(ctx, "k")
				require.NoError(t, err)
				if r.Allowed > 0 {
					times = append(times, now)
				} else {
					require.Positive(t, r.RetryAfter)
				}
			}
		}
		clk.Advance(time.Millisecond)
	}
	writes := revision(t, ctx, c.Client()) - rev0
	span := time.Duration(steps) * time.Millisecond
	st := measure(times, lim, span, writes)
	t.Logf("%s", st)
	require.GreaterOrEqual(t, st.utilisation, 0.90)
	require.LessOrEqual(t, st.writesPerPermit, 0.05)
	require.LessOrEqual(t, st.overshoot, 0.05)
	// The documented worst case: Rate × window above the exact bound.
	bound := int(float64(lim.Rate) * ratelimit.DefaultBatchWindow.Seconds())
	require.LessOrEqual(t, st.maxExcess, bound)
}

// stats summarises a run of allowed events against a limit.
type stats struct {
	permits         int
	utilisation     float64 // permits / (Burst + Rate × span)
	writesPerPermit float64
	overshoot       float64 // worst (count − bound)/bound over windows
	maxExcess       int     // worst count − bound, in events
}

func (s stats) String() string {
	return fmt.Sprintf("%d permits, utilisation %.1f%%, %.4f writes/permit, overshoot %.2f%% (%d events)",
		s.permits, 100*s.utilisation, s.writesPerPermit, 100*s.overshoot, s.maxExcess)
}

// measure compares the events at times (sorted or not) with Burst + Rate ×
// t for every window length t from 1ms to the whole span.
func measure(times []time.Duration, lim ratelimit.Limit, span time.Duration, writes int64) stats {
	slices.Sort(times)
	st := stats{permits: len(times)}
	perNs := float64(lim.Rate) / float64(lim.Period)
	st.utilisation = float64(len(times)) / (float64(lim.Burst) + perNs*float64(span))
	if len(times) > 0 {
		st.writesPerPermit = float64(writes) / float64(len(times))
	}
	for _, w := range []time.Duration{time.Millisecond, 5 * time.Millisecond, 10 * time.Millisecond,
		25 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond, 250 * time.Millisecond,
		500 * time.Millisecond, time.Second, span} {
		// Most events in any closed window [x, x+w).
		most, j := 0, 0
		for i := range times {
			for times[i]-times[j] >= w {
				j++
			}
			most = max(most, i-j+1)
		}
		bound := float64(lim.Burst) + perNs*float64(w)
		if ex := float64(most) - bound; ex > 0 {
			st.overshoot = max(st.overshoot, ex/bound)
			st.maxExcess = max(st.maxExcess, int(ex+0.5))
		}
	}
	return st
}

// TestClockSkew: an instance whose clock runs ahead by S gets at most
// Rate × S extra events once; an instance whose clock runs 10s behind
// adopts the time it reads from the bucket and is not starved.
func TestClockSkew(t *testing.T) {
	c := embedtest.New(t)
	ctx := testkit.Context(t)
	clk := newFakeClock()
	lim := ratelimit.PerSecond(10)
	opts := []ratelimit.Option{ratelimit.WithBatchWindow(0)}
	mk := func(skew time.Duration) *ratelimit.Limiter {
		cli, err := c.NewClient()
		require.NoError(t, err)
		return newLimiter(t, cli, "skew", lim, append(opts, ratelimit.WithClock(clk.skewed(skew)))...)
	}
	fast, ok, slow := mk(300*time.Millisecond), mk(0), mk(-10*time.Second)

	drain := func(l *ratelimit.Limiter) (n int, last ratelimit.Result) {
		for {
			r, err := l.Allow(ctx, "k")
			require.NoError(t, err)
			if r.Allowed == 0 {
				return n, r
			}
			n++
		}
	}
	n, _ := drain(ok)
	require.Equal(t, 10, n)
	n, _ = drain(fast)
	require.Equal(t, 3, n, "300ms ahead: 3 events early, once")
	n, r := drain(slow)
	require.Equal(t, 0, n)
	require.LessOrEqual(t, r.RetryAfter, 100*time.Millisecond, "the slow instance adopted the bucket's time")
	n, _ = drain(ok)
	require.Equal(t, 0, n)

	// From here on every instance runs on the fast instance's time, and the
	// total stays within Burst + Rate × (t + S).
	total := 13
	for range 20 {
		clk.Advance(100 * time.Millisecond)
		for _, l := range []*ratelimit.Limiter{slow, ok, fast} {
			n, _ := drain(l)
			total += n
		}
	}
	require.Equal(t, 13+20, total)

	// The slow instance takes part: the next token goes to whoever asks.
	clk.Advance(100 * time.Millisecond)
	n, _ = drain(slow)
	require.Equal(t, 1, n)
}

// TestCrashDoesNotRefill cuts an instance off with its bucket empty: the
// bucket stays empty for the others, and the key's lease lasts until the
// bucket would be full anyway.
func TestCrashDoesNotRefill(t *testing.T) {
	c := embedtest.New(t)
	ctx := testkit.Context(t)
	lim := ratelimit.PerMinute(5)
	cli, err := c.NewClient()
	require.NoError(t, err)
	a, err := ratelimit.New(cli, "crash", lim, ratelimit.WithBatchWindow(0))
	require.NoError(t, err)
	defer a.Close()
	require.NoError(t, a.WaitN(ctx, "k", 5))
	require.NoError(t, cli.Close()) // the crash: no revoke, no goodbye

	b := newLimiter(t, c.Client(), "crash", lim)
	r, err := b.Allow(ctx, "k")
	require.NoError(t, err)
	require.Zero(t, r.Allowed)
	require.Greater(t, r.RetryAfter, 10*time.Second)
	require.Greater(t, r.ResetAfter, 50*time.Second)

	resp, err := c.Client().Get(ctx, ratelimit.DefaultPrefix, clientv3.WithPrefix())
	require.NoError(t, err)
	var found bool
	for _, kv := range resp.Kvs {
		if string(kv.Key) != ratelimit.DefaultPrefix+"crash/b/k" {
			continue
		}
		found = true
		require.NotZero(t, kv.Lease, "idle buckets must be able to vanish")
		ttl, err := c.Client().TimeToLive(ctx, clientv3.LeaseID(kv.Lease))
		require.NoError(t, err)
		require.GreaterOrEqual(t, time.Duration(ttl.TTL)*time.Second, r.ResetAfter,
			"the key must outlive the bucket's refill")
	}
	require.True(t, found)
}

// TestIdleKeyVanishes: a key nobody uses disappears once its bucket is
// full, and its absence reads as a full bucket.
func TestIdleKeyVanishes(t *testing.T) {
	t.Parallel()
	c := embedtest.New(t)
	ctx := testkit.Context(t)
	lim := ratelimit.Limit{Rate: 1000, Period: time.Second, Burst: 1}
	l := newLimiter(t, c.Client(), "idle", lim)
	key := ratelimit.DefaultPrefix + "idle/b/k"

	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wch := c.Client().Watch(wctx, key, clientv3.WithCreatedNotify())
	<-wch
	r, err := l.Allow(ctx, "k")
	require.NoError(t, err)
	require.Equal(t, 1, r.Allowed)
	for ev := range wch {
		require.NoError(t, ev.Err())
		if len(ev.Events) > 0 && ev.Events[len(ev.Events)-1].Type == clientv3.EventTypeDelete {
			break
		}
	}
	require.NoError(t, ctx.Err(), "the key did not vanish")
	r, err = l.Allow(ctx, "k")
	require.NoError(t, err)
	require.Equal(t, 1, r.Allowed)
}

// TestKeyEncoding: no name or key is a prefix of another's key range.
func TestKeyEncoding(t *testing.T) {
	c := embedtest.New(t)
	ctx := testkit.Context(t)
	lim := ratelimit.PerSecond(1)
	a := newLimiter(t, c.Client(), "a", lim)
	ab := newLimiter(t, c.Client(), "a/b", lim)
	pct := newLimiter(t, c.Client(), "a%2Fb", lim)

	for _, call := range []struct {
		l   *ratelimit.Limiter
		key string
	}{{a, "b/x"}, {a, "b"}, {ab, "x"}, {pct, "x"}, {a, "ключ"}} {
		r, err := call.l.Allow(ctx, call.key)
		require.NoError(t, err)
		require.Equal(t, 1, r.Allowed, "%s %s shares no bucket", call.l.Name(), call.key)
	}
	resp, err := c.Client().Get(ctx, ratelimit.DefaultPrefix+"a/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
	require.NoError(t, err)
	var got []string
	for _, kv := range resp.Kvs {
		got = append(got, string(kv.Key))
	}
	p := ratelimit.DefaultPrefix
	require.ElementsMatch(t, []string{p + "a/b/b%2Fx", p + "a/b/b", p + "a/b/%D0%BA%D0%BB%D1%8E%D1%87"}, got)
}

// TestLimitChange sets a new limit through one instance and through etcd
// directly: every instance puts it in force, a new instance starts with
// it, and deleting it restores each instance's own limit.
func TestLimitChange(t *testing.T) {
	c := embedtest.New(t)
	ctx := testkit.Context(t)
	clk := newFakeClock()
	def := ratelimit.PerSecond(100)
	var hooks [3]chan ratelimit.Limit
	ls := make([]*ratelimit.Limiter, 3)
	for i := range ls {
		hooks[i] = make(chan ratelimit.Limit, 10)
		cli, err := c.NewClient()
		require.NoError(t, err)
		ls[i] = newLimiter(t, cli, "change", def, ratelimit.WithClock(clk.Now),
			ratelimit.WithLimitHook(func(l ratelimit.Limit) { hooks[i] <- l }))
		_, err = ls[i].Allow(ctx, "warm-up") // the limiter has read the stored limit
		require.NoError(t, err)
	}
	expect := func(want ratelimit.Limit) {
		t.Helper()
		for i, h := range hooks {
			select {
			case got := <-h:
				require.Equal(t, want, got, "instance %d", i)
				require.Equal(t, want, ls[i].Limit())
			case <-ctx.Done():
				require.FailNowf(t, "a limit never arrived", "instance %d never saw %v", i, want)
			}
		}
	}

	two := ratelimit.Limit{Rate: 2, Period: time.Minute, Burst: 2}
	require.NoError(t, ls[0].SetLimit(ctx, two))
	expect(two)
	for i, want := range []int{1, 1, 0} {
		r, err := ls[i].Allow(ctx, "k")
		require.NoError(t, err)
		require.Equal(t, want, r.Allowed, "instance %d", i)
	}
	_, err := ls[1].AllowN(ctx, "k", 3)
	require.ErrorIs(t, err, ratelimit.ErrInvalidN, "n > the new burst")

	// A new instance starts with the stored limit, not its own.
	late := newLimiter(t, c.Client(), "change", def, ratelimit.WithClock(clk.Now))
	r, err := late.Allow(ctx, "k")
	require.NoError(t, err)
	require.Zero(t, r.Allowed)
	require.Equal(t, two, late.Limit())

	// An operator's etcdctl: a broken value is ignored, a good one applied.
	key := ratelimit.DefaultPrefix + "change/limit"
	_, err = c.Client().Put(ctx, key, `{"rate":0}`)
	require.NoError(t, err)
	_, err = c.Client().Put(ctx, key, `{"rate":3,"period":"1s","burst":6}`)
	require.NoError(t, err)
	expect(ratelimit.Limit{Rate: 3, Period: time.Second, Burst: 6})

	_, err = c.Client().Delete(ctx, key)
	require.NoError(t, err)
	expect(def)
}
