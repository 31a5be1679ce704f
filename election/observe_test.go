package election_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/leasekit/leasekit/election"
	"github.com/leasekit/leasekit/embedtest"
	"github.com/leasekit/leasekit/internal/testkit"
)

// Observe reports every change: no leader, a leader, a proclaimed value,
// the next leader, and no leader again.
func TestObserveEveryChange(t *testing.T) {
	c := embedtest.New(t)
	ctx := testkit.Context(t)
	const name = "observe"
	a, b := candidate(t, c, name), candidate(t, c, name)
	ch := observe(t, ctx, candidate(t, c, name))

	require.Equal(t, election.Leader{}, testkit.Recv(t, ch), "first: no leader")
	require.NoError(t, a.Campaign(ctx, "a"))
	require.Equal(t, election.Leader{Value: "a", Rev: a.Rev()}, testkit.Recv(t, ch))
	require.NoError(t, a.Proclaim(ctx, "a2"))
	require.Equal(t, election.Leader{Value: "a2", Rev: a.Rev()}, testkit.Recv(t, ch))

	// A candidate joining the line changes nothing observable; the
	// handover does.
	won := campaignAsync(ctx, b, "b")
	waitQueued(t, c.Client(), name, 2)
	require.NoError(t, a.Resign(ctx))
	require.NoError(t, testkit.Recv(t, won))
	l := testkit.Recv(t, ch)
	require.Equal(t, election.Leader{Value: "b", Rev: b.Rev()}, l)
	require.Greater(t, l.Rev, a.Rev())

	require.NoError(t, b.Resign(ctx))
	require.Equal(t, election.Leader{}, testkit.Recv(t, ch), "no leader after the last resigns")
}

// Observe's first report is the leader at the time, even if it is not
// the first leader there ever was.
func TestObserveStartsWithCurrentLeader(t *testing.T) {
	c := embedtest.New(t)
	ctx := testkit.Context(t)
	a := candidate(t, c, "current")
	require.NoError(t, a.Campaign(ctx, "a"))
	require.NoError(t, a.Proclaim(ctx, "a2"))
	octx, stop := context.WithCancel(ctx)
	defer stop()
	ch := candidate(t, c, "current").Observe(octx)
	require.Equal(t, election.Leader{Value: "a2", Rev: a.Rev()}, testkit.Recv(t, ch))
	stop()
	_, open := <-ch
	require.False(t, open, "closed when ctx ends")
}

// An observer cut off from etcd while leaders come and go reports, once
// it reconnects, the leader at that time, never the ones it missed:
// clientv3 resumes a broken watch from where it stopped and replays them.
func TestObserveAfterReconnect(t *testing.T) {
	c := embedtest.New(t)
	ctx := testkit.Context(t)
	const name = "reconnect"
	proxy, err := c.NewProxy(0)
	require.NoError(t, err)
	obsCli, err := c.NewClient(clientv3.Config{Endpoints: []string{proxy.Endpoint()}, DialOptions: quickRedial})
	require.NoError(t, err)
	obs, err := election.New(obsCli, name)
	require.NoError(t, err)
	a, b, cc := candidate(t, c, name), candidate(t, c, name), candidate(t, c, name)

	require.NoError(t, a.Campaign(ctx, "a"))
	ch := observe(t, ctx, obs)
	require.Equal(t, election.Leader{Value: "a", Rev: a.Rev()}, testkit.Recv(t, ch))

	proxy.Cut()
	require.NoError(t, a.Resign(ctx))
	require.NoError(t, b.Campaign(ctx, "b"))
	require.NoError(t, b.Resign(ctx))
	require.NoError(t, cc.Campaign(ctx, "c"))
	proxy.Heal()
	require.Equal(t, election.Leader{Value: "c", Rev: cc.Rev()}, testkit.Recv(t, ch),
		"after the reconnect: the current leader, not the ones that came and went")

	// It goes on following the election.
	require.NoError(t, cc.Resign(ctx))
	require.Equal(t, election.Leader{}, testkit.Recv(t, ch))
}
