package election_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/leasekit/leasekit/election"
	"github.com/leasekit/leasekit/embedtest"
)

// Observe reports every change: no leader, a leader, a proclaimed value,
// the next leader, and no leader again.
func TestObserveEveryChange(t *testing.T) {
	c := embedtest.New(t)
	ctx := testCtx(t)
	const name = "observe"
	a, b := candidate(t, c, name), candidate(t, c, name)
	obs := candidate(t, c, name)
	octx, stop := context.WithCancel(ctx)
	defer stop()
	ch := obs.Observe(octx)

	require.Equal(t, election.Leader{}, recv(t, ch), "first: no leader")
	require.NoError(t, a.Campaign(ctx, "a"))
	require.Equal(t, election.Leader{Value: "a", Rev: a.Rev()}, recv(t, ch))
	require.NoError(t, a.Proclaim(ctx, "a2"))
	require.Equal(t, election.Leader{Value: "a2", Rev: a.Rev()}, recv(t, ch))

	// A candidate joining the line changes nothing observable; the
	// handover does.
	won := campaignAsync(ctx, b, "b")
	waitQueued(t, c.Client(), name, 2)
	require.NoError(t, a.Resign(ctx))
	require.NoError(t, recv(t, won))
	l := recv(t, ch)
	require.Equal(t, election.Leader{Value: "b", Rev: b.Rev()}, l)
	require.Greater(t, l.Rev, a.Rev())

	require.NoError(t, b.Resign(ctx))
	require.Equal(t, election.Leader{}, recv(t, ch), "no leader after the last resigns")

	stop()
	for range ch {
	}
}

// Observe's first report is the leader at the time, even if it is not
// the first leader there ever was.
func TestObserveStartsWithCurrentLeader(t *testing.T) {
	c := embedtest.New(t)
	ctx := testCtx(t)
	a := candidate(t, c, "current")
	require.NoError(t, a.Campaign(ctx, "a"))
	require.NoError(t, a.Proclaim(ctx, "a2"))
	octx, stop := context.WithCancel(ctx)
	defer stop()
	ch := candidate(t, c, "current").Observe(octx)
	require.Equal(t, election.Leader{Value: "a2", Rev: a.Rev()}, recv(t, ch))
	stop()
	_, open := <-ch
	require.False(t, open, "closed when ctx ends")
}
