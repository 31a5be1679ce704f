package ratelimit_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/leasekit/leasekit/embedtest"
	"github.com/leasekit/leasekit/internal/testkit"
	"github.com/leasekit/leasekit/ratelimit"
)

// newLimiter returns a limiter that is closed when the test ends.
func newLimiter(t testing.TB, cli *clientv3.Client, name string, lim ratelimit.Limit, opts ...ratelimit.Option) *ratelimit.Limiter {
	t.Helper()
	l, err := ratelimit.New(cli, name, lim, opts...)
	require.NoError(t, err)
	t.Cleanup(func() { l.Close() })
	return l
}

func TestExactGCRA(t *testing.T) {
	c := embedtest.New(t)
	ctx := testkit.Context(t)
	clk := newFakeClock()
	l := newLimiter(t, c.Client(), "api", ratelimit.PerSecond(10),
		ratelimit.WithClock(clk.Now), ratelimit.WithBatchWindow(0))
	ms := time.Millisecond

	rev := revision(t, ctx, c.Client())
	for i := 1; i <= 10; i++ {
		r, err := l.Allow(ctx, "k")
		require.NoError(t, err)
		require.Equal(t, ratelimit.Result{Allowed: 1, Remaining: 10 - i, ResetAfter: time.Duration(i) * 100 * ms}, r, "call %d", i)
	}
	require.Equal(t, rev+10, revision(t, ctx, c.Client()), "one write per allowed call")

	r, err := l.Allow(ctx, "k")
	require.NoError(t, err)
	require.Equal(t, ratelimit.Result{Remaining: 0, RetryAfter: 100 * ms, ResetAfter: time.Second}, r)
	clk.Advance(40 * ms)
	r, err = l.Allow(ctx, "k")
	require.NoError(t, err)
	require.Equal(t, 60*ms, r.RetryAfter)
	require.Equal(t, rev+10, revision(t, ctx, c.Client()), "no write for a denial")

	clk.Advance(60 * ms)
	r, err = l.Allow(ctx, "k")
	require.NoError(t, err)
	require.Equal(t, ratelimit.Result{Allowed: 1, ResetAfter: time.Second}, r)

	// Three tokens accrue in 300ms; five need 200ms more.
	clk.Advance(300 * ms)
	r, err = l.AllowN(ctx, "k", 5)
	require.NoError(t, err)
	require.Equal(t, ratelimit.Result{Remaining: 3, RetryAfter: 200 * ms, ResetAfter: 700 * ms}, r)
	clk.Advance(200 * ms)
	r, err = l.AllowN(ctx, "k", 5)
	require.NoError(t, err)
	require.Equal(t, ratelimit.Result{Allowed: 5, ResetAfter: time.Second}, r)

	// Another key has its own bucket.
	r, err = l.AllowN(ctx, "other", 10)
	require.NoError(t, err)
	require.Equal(t, 10, r.Allowed)
	require.Equal(t, rev+13, revision(t, ctx, c.Client()))
}

func TestBadInput(t *testing.T) {
	c := embedtest.New(t)
	ctx := testkit.Context(t)
	cli := c.Client()
	ok := ratelimit.PerSecond(10)
	for _, tc := range []struct {
		name  string
		cli   *clientv3.Client
		lname string
		lim   ratelimit.Limit
		opts  []ratelimit.Option
		want  error
	}{
		{"nil client", nil, "n", ok, nil, ratelimit.ErrInvalidOption},
		{"nil client, as before", nil, "n", ok, nil, ratelimit.ErrNilClient},
		{"nil Option", cli, "n", ok, []ratelimit.Option{nil}, ratelimit.ErrInvalidOption},
		{"nil logger", cli, "n", ok, []ratelimit.Option{ratelimit.WithLogger(nil)}, ratelimit.ErrInvalidOption},
		{"nil metrics", cli, "n", ok, []ratelimit.Option{ratelimit.WithMetrics(nil)}, ratelimit.ErrInvalidOption},
		{"empty name", cli, "", ok, nil, ratelimit.ErrInvalidName},
		{"name not UTF-8", cli, "a\xff", ok, nil, ratelimit.ErrInvalidName},
		{"name too long", cli, strings.Repeat("x", ratelimit.MaxNameLen+1), ok, nil, ratelimit.ErrInvalidName},
		{"zero rate", cli, "n", ratelimit.Limit{Rate: 0, Period: time.Second, Burst: 1}, nil, ratelimit.ErrInvalidLimit},
		{"negative rate", cli, "n", ratelimit.PerSecond(-5), nil, ratelimit.ErrInvalidLimit},
		{"zero burst", cli, "n", ratelimit.Limit{Rate: 1, Period: time.Second}, nil, ratelimit.ErrInvalidLimit},
		{"zero period", cli, "n", ratelimit.Limit{Rate: 1, Burst: 1}, nil, ratelimit.ErrInvalidLimit},
		{"negative period", cli, "n", ratelimit.Limit{Rate: 1, Period: -time.Second, Burst: 1}, nil, ratelimit.ErrInvalidLimit},
		{"finer than 1ns", cli, "n", ratelimit.Limit{Rate: 2, Period: 1, Burst: 1}, nil, ratelimit.ErrInvalidLimit},
		{"refill too long", cli, "n", ratelimit.Limit{Rate: 1, Period: time.Hour, Burst: 1_000_000}, nil, ratelimit.ErrInvalidLimit},
		{"negative window", cli, "n", ok, []ratelimit.Option{ratelimit.WithBatchWindow(-time.Millisecond)}, ratelimit.ErrInvalidOption},
		{"empty prefix", cli, "n", ok, []ratelimit.Option{ratelimit.WithPrefix("")}, ratelimit.ErrInvalidOption},
	} {
		t.Run("New/"+tc.name, func(t *testing.T) {
			l, err := ratelimit.New(tc.cli, tc.lname, tc.lim, tc.opts...)
			require.ErrorIs(t, err, tc.want)
			require.Nil(t, l)
		})
	}

	l := newLimiter(t, cli, "bad-input", ok)
	for _, tc := range []struct {
		name string
		key  string
		n    int
		want error
	}{
		{"zero n", "k", 0, ratelimit.ErrInvalidN},
		{"negative n", "k", -1, ratelimit.ErrInvalidN},
		{"n over burst", "k", 11, ratelimit.ErrInvalidN},
		{"empty key", "", 1, ratelimit.ErrInvalidKey},
		{"key not UTF-8", "\xc3\x28", 1, ratelimit.ErrInvalidKey},
		{"key too long", strings.Repeat("k", ratelimit.MaxNameLen+1), 1, ratelimit.ErrInvalidKey},
	} {
		t.Run("AllowN/"+tc.name, func(t *testing.T) {
			r, err := l.AllowN(ctx, tc.key, tc.n)
			require.ErrorIs(t, err, tc.want)
			require.Zero(t, r)
			// WaitN fails at once too: it never waits for the impossible.
			require.ErrorIs(t, l.WaitN(ctx, tc.key, tc.n), tc.want)
			res, err := l.ReserveN(ctx, tc.key, tc.n)
			require.ErrorIs(t, err, tc.want)
			require.Nil(t, res)
		})
	}
	r, err := l.AllowN(ctx, "k", 10)
	require.NoError(t, err)
	require.Equal(t, 10, r.Allowed, "bad calls took nothing")
	t.Run("SetLimit", func(t *testing.T) {
		require.ErrorIs(t, l.SetLimit(ctx, ratelimit.PerSecond(0)), ratelimit.ErrInvalidLimit)
		require.Equal(t, ok, l.Limit())
	})
}

func TestClose(t *testing.T) {
	c := embedtest.New(t)
	ctx := testkit.Context(t)
	l, err := ratelimit.New(c.Client(), "close", ratelimit.PerMinute(1))
	require.NoError(t, err)
	require.NoError(t, l.Wait(ctx, "k"))

	// A waiter blocked when the limiter closes returns ErrClosed.
	errc := make(chan error, 1)
	go func() { errc <- l.Wait(ctx, "k") }()
	require.NoError(t, l.Close())
	require.NoError(t, l.Close())
	select {
	case err := <-errc:
		require.ErrorIs(t, err, ratelimit.ErrClosed)
	case <-ctx.Done():
		require.FailNow(t, "Wait did not return after Close")
	}
	_, err = l.Allow(ctx, "k")
	require.ErrorIs(t, err, ratelimit.ErrClosed)
	require.ErrorIs(t, l.SetLimit(ctx, ratelimit.PerSecond(1)), ratelimit.ErrClosed)

	// Close left the bucket alone: a new instance finds it empty.
	l2 := newLimiter(t, c.Client(), "close", ratelimit.PerMinute(1))
	r, err := l2.Allow(ctx, "k")
	require.NoError(t, err)
	require.Zero(t, r.Allowed)
	require.Greater(t, r.RetryAfter, 50*time.Second)
}

func TestWait(t *testing.T) {
	c := embedtest.New(t)
	ctx := testkit.Context(t)
	l := newLimiter(t, c.Client(), "wait", ratelimit.Limit{Rate: 100, Period: time.Second, Burst: 1})
	for range 5 {
		require.NoError(t, l.Wait(ctx, "k"))
	}

	slow := newLimiter(t, c.Client(), "wait-slow", ratelimit.PerHour(2))
	require.NoError(t, slow.WaitN(ctx, "k", 2))
	wctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	err := slow.Wait(wctx, "k")
	require.ErrorIs(t, err, context.DeadlineExceeded)
}

// recorder is a Metrics that counts what it is told.
type recorder struct {
	mu                                    sync.Mutex
	allowed, denied, near, conflict, held int
}

func (r *recorder) add(p *int, n int) { r.mu.Lock(); *p += n; r.mu.Unlock() }

func (r *recorder) Allowed(_ string, n int) { r.add(&r.allowed, n) }
func (r *recorder) Denied(_ string, n int)  { r.add(&r.denied, n) }
func (r *recorder) NearLimit(string)        { r.add(&r.near, 1) }
func (r *recorder) Conflict(string)         { r.add(&r.conflict, 1) }
func (r *recorder) Held(_ string, d int)    { r.add(&r.held, d) }

func (r *recorder) get() [5]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return [5]int{r.allowed, r.denied, r.near, r.conflict, r.held}
}

func TestMetrics(t *testing.T) {
	c := embedtest.New(t)
	ctx := testkit.Context(t)
	clk := newFakeClock()
	var ma, mb recorder
	a := newLimiter(t, c.Client(), "metrics", ratelimit.PerSecond(10),
		ratelimit.WithClock(clk.Now), ratelimit.WithMetrics(&ma), ratelimit.WithBatchWindow(0))
	b := newLimiter(t, c.Client(), "metrics", ratelimit.PerSecond(10),
		ratelimit.WithClock(clk.Now), ratelimit.WithMetrics(&mb), ratelimit.WithBatchWindow(0))

	_, err := a.AllowN(ctx, "k", 5)
	require.NoError(t, err)
	// b has never seen the key: its first compare-and-swap assumes it is
	// absent, loses, and retries with the state it got back.
	_, err = b.AllowN(ctx, "k", 5)
	require.NoError(t, err)
	_, err = b.AllowN(ctx, "k", 2)
	require.NoError(t, err)
	require.Equal(t, [5]int{5, 0, 0, 0, 0}, ma.get())
	require.Equal(t, [5]int{5, 2, 1, 1, 0}, mb.get()) // empty after b's 5: near the limit

	// Batched: tokens held here show up, and go when used or expired.
	var mh recorder
	h := newLimiter(t, c.Client(), "metrics-held", ratelimit.PerSecond(1000),
		ratelimit.WithClock(clk.Now), ratelimit.WithMetrics(&mh))
	for range 40 {
		for range 10 {
			_, err := h.Allow(ctx, "k")
			require.NoError(t, err)
		}
		clk.Advance(time.Millisecond)
	}
	require.Positive(t, mh.get()[4], "a key used 10,000/s is served from a batch")
	clk.Advance(ratelimit.DefaultBatchWindow)
	_, err = h.Allow(ctx, "k")
	require.NoError(t, err)
	require.Positive(t, mh.get()[4], "a fresh batch")
	require.Equal(t, 401, mh.get()[0])

	var exact int
	for range 5 {
		clk.Advance(time.Second)
		_, err = h.Allow(ctx, "k") // demand fell to 1/s: exact again
		require.NoError(t, err)
		exact = mh.get()[4]
	}
	require.Zero(t, exact, "held tokens expired and none taken at a low rate")
}

func TestCommittedButUnseen(t *testing.T) {
	// A caller whose ctx ends mid-call gets an error, never a false "allowed".
	c := embedtest.New(t)
	l := newLimiter(t, c.Client(), "ctx", ratelimit.PerSecond(10))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := l.Allow(ctx, "k")
	require.True(t, errors.Is(err, context.Canceled), "err = %v", err)
}
