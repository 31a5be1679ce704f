package ratelimit_test

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/leasekit/leasekit/embedtest"
	"github.com/leasekit/leasekit/internal/testkit"
	"github.com/leasekit/leasekit/ratelimit"
)

// outageRecorder is a Metrics that also records outage events, and hands
// the state changes to tests through channels.
type outageRecorder struct {
	recorder
	down chan bool // Unreachable, in order
	live chan int  // LiveInstances, in order

	mu       sync.Mutex
	outcomes map[string]int
}

func newOutageRecorder() *outageRecorder {
	return &outageRecorder{down: make(chan bool, 100), live: make(chan int, 100), outcomes: map[string]int{}}
}

func (r *outageRecorder) Unreachable(_ string, down bool) { r.down <- down }
func (r *outageRecorder) LiveInstances(_ string, n int)   { r.live <- n }
func (r *outageRecorder) WithoutEtcd(_ string, outcome string, n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.outcomes[outcome] += n
}

func (r *outageRecorder) outcome(o string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.outcomes[o]
}

// await waits for ch to deliver want, skipping other values.
func await[T comparable](t testing.TB, ctx context.Context, ch <-chan T, want T) {
	t.Helper()
	for {
		select {
		case got := <-ch:
			if got == want {
				return
			}
		case <-ctx.Done():
			require.FailNowf(t, "a value never came", "never got %v", want)
		}
	}
}

// outageTimeout is the call timeout of the outage tests: the default, far
// above a write's time even under -race on a loaded machine.
const outageTimeout = time.Second

// TestOutagePolicy cuts one of three instances off from etcd with a proxy
// and checks each policy during the outage and after it: FailClosed
// refuses with ErrUnavailable, FailOpen allows, FailLocal allows this
// instance's third of the limit and charges it to the shared bucket once
// etcd is back, so that the outage's events count against the limit. An
// instance started during the outage refuses under FailLocal, as it has
// never counted the instances.
func TestOutagePolicy(t *testing.T) {
	for _, policy := range []ratelimit.OutagePolicy{ratelimit.FailClosed, ratelimit.FailOpen, ratelimit.FailLocal} {
		t.Run(policy.String(), func(t *testing.T) {
			t.Parallel()
			c := embedtest.New(t)
			ctx := testkit.Context(t)
			clk := newFakeClock()
			lim := ratelimit.Limit{Rate: 60, Period: time.Minute, Burst: 6} // one per second
			opts := func(m ratelimit.Metrics) []ratelimit.Option {
				return []ratelimit.Option{ratelimit.WithClock(clk.Now), ratelimit.WithOutagePolicy(policy),
					ratelimit.WithCallTimeout(outageTimeout), ratelimit.WithMetrics(m)}
			}
			p, cut := testkit.Proxied(t, c, 0)
			ma := newOutageRecorder()
			a := newLimiter(t, cut, "outage", lim, opts(ma)...)
			b := newLimiter(t, c.Client(), "outage", lim, opts(newOutageRecorder())...)
			other, err := c.NewClient()
			require.NoError(t, err)
			newLimiter(t, other, "outage", lim, opts(newOutageRecorder())...)
			if policy == ratelimit.FailLocal {
				await(t, ctx, ma.live, 3)
			}

			r, err := a.Allow(ctx, "k")
			require.NoError(t, err)
			require.Equal(t, 1, r.Allowed)

			p.Cut()
			// Bounded by the call timeout, not by ctx: ctx would fail the
			// test with a plain DeadlineExceeded.
			r, err = a.Allow(ctx, "k")
			await(t, ctx, ma.down, true)
			switch policy {
			case ratelimit.FailClosed:
				require.ErrorIs(t, err, ratelimit.ErrUnavailable)
				require.ErrorIs(t, err, context.DeadlineExceeded, "the call timeout, wrapped")
				_, err = a.Allow(ctx, "k")
				require.ErrorIs(t, err, ratelimit.ErrUnavailable)
				_, err = a.Reserve(ctx, "r")
				require.ErrorIs(t, err, ratelimit.ErrUnavailable)
				require.ErrorIs(t, a.Wait(ctx, "k"), ratelimit.ErrUnavailable, "Wait does not wait for etcd")
				require.Equal(t, 4, ma.outcome(ratelimit.OutcomeRefused))
			case ratelimit.FailOpen:
				require.NoError(t, err)
				for range 10 {
					require.Equal(t, ratelimit.Result{Allowed: 1, Remaining: 5, ResetAfter: time.Second, Degraded: true}, r)
					r, err = a.Allow(ctx, "k")
					require.NoError(t, err)
				}
				res, err := a.Reserve(ctx, "r")
				require.NoError(t, err)
				require.True(t, res.OK())
				require.Zero(t, res.Delay())
				require.Equal(t, 12, ma.outcome(ratelimit.OutcomeAllowed))
			case ratelimit.FailLocal:
				// The share: 1 every 3s, burst 2, starting from the 5 of 6
				// tokens a last saw: 1 now, then 1 a second later.
				require.NoError(t, err)
				require.Equal(t, ratelimit.Result{Allowed: 1, ResetAfter: 4 * time.Second, Degraded: true}, r)
				r, err = a.Allow(ctx, "k")
				require.NoError(t, err)
				require.Equal(t, ratelimit.Result{RetryAfter: time.Second, ResetAfter: 4 * time.Second, Degraded: true}, r)
				clk.Advance(time.Second)
				r, err = a.Allow(ctx, "k")
				require.NoError(t, err)
				require.Equal(t, 1, r.Allowed)
				r, err = a.Allow(ctx, "k")
				require.NoError(t, err)
				require.Equal(t, 3*time.Second, r.RetryAfter)
				require.Equal(t, 2, ma.outcome(ratelimit.OutcomeAllowed))
				require.Equal(t, 2, ma.outcome(ratelimit.OutcomeDenied))
				res, err := a.Reserve(ctx, "r")
				require.NoError(t, err)
				require.True(t, res.OK())
			}

			// The middleware: 503 under FailClosed, the policy's answer
			// otherwise.
			resp := serve(ratelimit.Middleware(a, byAPIKey)(ok), "/", "mw")
			if policy == ratelimit.FailClosed {
				require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
				require.Equal(t, "1", resp.Header.Get(ratelimit.HeaderRetryAfter))
			} else {
				require.Equal(t, http.StatusOK, resp.StatusCode)
				require.NotEmpty(t, resp.Header.Get(ratelimit.HeaderRateLimit))
			}

			// An instance started during the outage never read the limit
			// or counted the instances.
			late := newLimiter(t, cut, "outage", lim, opts(newOutageRecorder())...)
			r, err = late.Allow(ctx, "k")
			if policy == ratelimit.FailOpen {
				require.NoError(t, err)
				require.True(t, r.Degraded)
			} else {
				require.ErrorIs(t, err, ratelimit.ErrUnavailable)
			}

			p.Heal()
			await(t, ctx, ma.down, false)
			r, err = a.Allow(ctx, "k")
			require.NoError(t, err)
			require.False(t, r.Degraded)
			require.Equal(t, 1, r.Allowed)
			if policy != ratelimit.FailLocal {
				return
			}
			// a's two local events were charged with that write. In the
			// second since a's first event, every instance together got
			// Burst + 1 = 7 events: 1 + 2 (local) + 1 by a, and 3 by b.
			require.Equal(t, 3, r.Remaining)
			got := 0
			for {
				r, err := b.Allow(ctx, "k")
				require.NoError(t, err)
				if r.Allowed == 0 {
					break
				}
				got++
			}
			require.Equal(t, 3, got)
		})
	}
}
