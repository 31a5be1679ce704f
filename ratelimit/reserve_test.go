package ratelimit_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/leasekit/leasekit/embedtest"
	"github.com/leasekit/leasekit/internal/testkit"
	"github.com/leasekit/leasekit/ratelimit"
)

// TestReserveCancel checks the accounting of reservations across two
// instances on a shared clock: a reservation goes into debt that the other
// instance sees, Cancel before the time to act gives the tokens back once,
// and Cancel after it, or after a limit change, gives nothing back. Over
// the whole run the events stay at Burst + Rate × t.
func TestReserveCancel(t *testing.T) {
	c := embedtest.New(t)
	ctx := testkit.Context(t)
	clk := newFakeClock()
	lim := ratelimit.PerSecond(10) // one per 100ms
	ls := instances(t, c, 2, "reserve", lim, ratelimit.WithClock(clk.Now), ratelimit.WithBatchWindow(0))
	a, b := ls[0], ls[1]
	ms := time.Millisecond
	retryAfter := func(l *ratelimit.Limiter) time.Duration {
		t.Helper()
		r, err := l.Allow(ctx, "k")
		require.NoError(t, err)
		require.Zero(t, r.Allowed)
		return r.RetryAfter
	}

	rev := revision(t, ctx, c.Client())
	all, err := a.ReserveN(ctx, "k", 10)
	require.NoError(t, err)
	require.True(t, all.OK())
	require.Zero(t, all.Delay(), "a full bucket")
	one, err := a.Reserve(ctx, "k")
	require.NoError(t, err)
	require.Equal(t, 100*ms, one.Delay(), "one token into debt")
	require.Equal(t, 200*ms, retryAfter(b), "b sees a's debt")
	two, err := b.ReserveN(ctx, "k", 2)
	require.NoError(t, err)
	require.Equal(t, 300*ms, two.Delay())
	require.Equal(t, rev+3, revision(t, ctx, c.Client()), "one write per reservation")

	clk.Advance(50 * ms)
	require.Equal(t, 50*ms, one.Delay())
	require.Equal(t, 350*ms, retryAfter(b), "after two")
	require.NoError(t, one.Cancel(ctx))
	require.Equal(t, 250*ms, retryAfter(a), "one token back: the next event is due with two's")
	require.NoError(t, one.Cancel(ctx), "cancel twice")
	require.Equal(t, 250*ms, retryAfter(a), "no second token back")
	require.Equal(t, rev+4, revision(t, ctx, c.Client()), "one write per cancel, none for the second")
	// b last saw the bucket before the cancel and denies from that state,
	// as the package documentation says of a bucket reset by hand.
	require.Equal(t, 350*ms, retryAfter(b))

	clk.Advance(250 * ms) // two's time to act
	require.Zero(t, two.Delay())
	r, err := a.Allow(ctx, "k")
	require.NoError(t, err)
	require.Equal(t, 1, r.Allowed)
	// 10 + 2 + 1 events in the first 300ms: Burst + Rate × 300ms exactly.

	clk.Advance(ms)
	require.NoError(t, two.Cancel(ctx))
	require.Equal(t, 99*ms, retryAfter(a), "two's time had passed: taken as done")
	require.NoError(t, all.Cancel(ctx))
	require.Equal(t, 99*ms, retryAfter(b))
	require.Equal(t, rev+5, revision(t, ctx, c.Client()), "late cancels write nothing")

	// A reservation made under another limit gives nothing back.
	clk.Advance(time.Second)
	pending, err := a.ReserveN(ctx, "k", 10)
	require.NoError(t, err)
	require.Zero(t, pending.Delay())
	late, err := a.Reserve(ctx, "k")
	require.NoError(t, err)
	require.Equal(t, 100*ms, late.Delay())
	require.NoError(t, a.SetLimit(ctx, ratelimit.PerSecond(20)))
	require.NoError(t, late.Cancel(ctx))
	require.NoError(t, pending.Cancel(ctx))
	require.Equal(t, 150*ms, retryAfter(a), "the debt stayed: 1.1s of arrival time ahead, at 20/s")
}

// TestReserveDeadline: a reservation that could not be acted on before
// ctx's deadline is not OK and takes nothing.
func TestReserveDeadline(t *testing.T) {
	c := embedtest.New(t)
	ctx := testkit.Context(t)
	clk := newFakeClock()
	l := newLimiter(t, c.Client(), "reserve-deadline", ratelimit.PerHour(1), ratelimit.WithClock(clk.Now))

	first, err := l.Reserve(ctx, "k")
	require.NoError(t, err)
	require.True(t, first.OK())
	short, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	r, err := l.Reserve(short, "k")
	require.NoError(t, err)
	require.False(t, r.OK(), "an hour is past the deadline")
	require.Equal(t, ratelimit.InfDuration, r.Delay())
	require.NoError(t, r.Cancel(ctx), "cancelling what is not OK does nothing")
	res, err := l.Allow(ctx, "k")
	require.NoError(t, err)
	require.Equal(t, time.Hour, res.RetryAfter, "the refused reservation took nothing")

	r, err = l.Reserve(context.Background(), "k") // no deadline: into debt
	require.NoError(t, err)
	require.True(t, r.OK())
	require.Equal(t, time.Hour, r.Delay())
}
