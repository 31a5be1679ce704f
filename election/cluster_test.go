package election_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/leasekit/leasekit/election"
	"github.com/leasekit/leasekit/embedtest"
	"github.com/leasekit/leasekit/internal/testkit"
)

// On three members, leadership keeps rotating without overlap and with
// increasing terms while the etcd leader moves, a member restarts and the
// etcd leader is killed and restarted.
func TestRunThreeMembersFaults(t *testing.T) {
	c := embedtest.New(t, embedtest.WithMembers(3))
	ctx := testkit.Context(t)
	other := func(than int) int { return (than + 1) % 3 }
	fault := func(what string, f func() error) func() {
		return func() {
			t.Logf("fault: %s", what)
			require.NoError(t, f(), what)
		}
	}
	rotation{
		t: t, c: c, name: "three", candidates: 3, terms: 16, writes: 2,
		// Faults make candidates back off; a loaded machine needs longer.
		timeout: time.Minute,
		opts:    []election.Option{election.WithTTL(5 * time.Second)},
		faults: map[int]func(){
			3: fault("move the etcd leader", func() error {
				lead, err := c.WaitLeader(ctx)
				if err != nil {
					return err
				}
				return c.MoveLeader(ctx, other(lead))
			}),
			6: fault("restart a follower", func() error {
				lead, err := c.WaitLeader(ctx)
				if err != nil {
					return err
				}
				m := c.Member(other(lead))
				if err := m.Stop(); err != nil {
					return err
				}
				return m.Restart(ctx)
			}),
			10: fault("kill and restart the etcd leader", func() error {
				lead, err := c.WaitLeader(ctx)
				if err != nil {
					return err
				}
				m := c.Member(lead)
				if err := m.Kill(); err != nil {
					return err
				}
				return m.Restart(ctx)
			}),
			13: fault("move the etcd leader again", func() error {
				lead, err := c.WaitLeader(ctx)
				if err != nil {
					return err
				}
				return c.MoveLeader(ctx, other(lead))
			}),
		},
	}.run()
}

// An observer whose member goes away while leadership changes twice and
// the history is compacted reports the current leader when it is back,
// never one that was already gone.
func TestObserveResumesAfterRestartAndCompaction(t *testing.T) {
	c := embedtest.New(t, embedtest.WithMembers(3))
	ctx := testkit.Context(t)
	const name = "resume"
	// Member 0 goes away; writes meanwhile should not wait for etcd to
	// replace its leader.
	require.NoError(t, c.MoveLeader(ctx, 1))
	// The observer talks to member 0 only; the candidates to the others.
	obsCli, err := c.NewClient(clientv3.Config{Endpoints: []string{c.Member(0).ClientURL()}, DialOptions: quickRedial})
	require.NoError(t, err)
	core, logs := observer.New(zap.DebugLevel)
	obs, err := election.New(obsCli, name, election.WithLogger(zap.New(core)))
	require.NoError(t, err)
	admin := testkit.MemberClient(t, c, 1, 2)
	cand := func() *election.Election { return candidateOn(t, testkit.MemberClient(t, c, 1, 2), name) }
	a, b, cc := cand(), cand(), cand()

	ch := observe(t, ctx, obs)
	require.Equal(t, election.Leader{}, testkit.Recv(t, ch))
	require.NoError(t, a.Campaign(ctx, "a"))
	require.Equal(t, election.Leader{Value: "a", Rev: a.Rev()}, testkit.Recv(t, ch))

	bWon := campaignAsync(ctx, b, "b")
	waitQueued(t, admin, name, 2)
	require.NoError(t, c.Member(0).Stop())

	require.NoError(t, a.Resign(ctx))
	require.NoError(t, testkit.Recv(t, bWon))
	cWon := campaignAsync(ctx, cc, "c")
	waitQueued(t, admin, name, 2)
	require.NoError(t, b.Resign(ctx))
	require.NoError(t, testkit.Recv(t, cWon))
	resp, err := admin.Get(ctx, "/")
	require.NoError(t, err)
	_, err = admin.Compact(ctx, resp.Header.Revision, clientv3.WithCompactPhysical())
	require.NoError(t, err)

	require.NoError(t, c.Member(0).Restart(ctx))
	require.Equal(t, election.Leader{Value: "c", Rev: cc.Rev()}, testkit.Recv(t, ch),
		"after the restart: the current leader, not b or a")
	require.NotZero(t, logs.FilterMessageSnippet("reading the election again").Len(),
		"Observe re-read the election after losing its watch's history")
	require.NoError(t, cc.Resign(ctx))
	require.Equal(t, election.Leader{}, testkit.Recv(t, ch))
}

// An observer on a member cut off from its peers stops hearing news (its
// watch requires a leader) and, once healed, reports the current leader.
func TestObserveAcrossPartition(t *testing.T) {
	c := embedtest.New(t, embedtest.WithMembers(3))
	ctx := testkit.Context(t)
	const name = "partition"
	// Member 0 is cut off; writes meanwhile should not wait for etcd to
	// replace its leader.
	require.NoError(t, c.MoveLeader(ctx, 1))
	obs, err := election.New(testkit.MemberClient(t, c, 0), name)
	require.NoError(t, err)
	cand := func() *election.Election { return candidateOn(t, testkit.MemberClient(t, c, 1, 2), name) }
	a, b := cand(), cand()
	require.NoError(t, a.Campaign(ctx, "a"))
	ch := observe(t, ctx, obs)
	require.Equal(t, election.Leader{Value: "a", Rev: a.Rev()}, testkit.Recv(t, ch))

	bWon := campaignAsync(ctx, b, "b")
	waitQueued(t, c.Client(), name, 2)
	require.NoError(t, c.Partition(0))
	require.NoError(t, a.Resign(ctx))
	require.NoError(t, testkit.Recv(t, bWon))
	require.NoError(t, c.Heal(0))
	require.Equal(t, election.Leader{Value: "b", Rev: b.Rev()}, testkit.Recv(t, ch))
	require.NoError(t, b.Resign(ctx))
	require.Equal(t, election.Leader{}, testkit.Recv(t, ch))
}

// A leader cut off from etcd stops its duties (their ctx's cause wraps
// ErrLost), and is told it stopped leading (OnStoppedLeading), before the next candidate can start its
// own: the lease counts as lost a margin before etcd can expire it, and
// Run gives the term up only after OnStoppedLeading. It campaigns again
// once the network heals.
func TestLeaderCutOff(t *testing.T) {
	c := embedtest.New(t, embedtest.WithMembers(3))
	ctx := testkit.Context(t)
	const name = "cutoff"
	const ttl = 2 * time.Second
	proxy, cutCli := testkit.Proxied(t, c, 0)
	otherCli := testkit.MemberClient(t, c, 1, 2)

	d := newDuties(t)
	rctx, stop := context.WithCancel(ctx)
	defer stop()
	type start struct {
		who int
		at  time.Time
	}
	starts := make(chan start, 10)
	cancelled := make(chan time.Time, 10)
	causes := make(chan error, 10)
	stopped := make(chan time.Time, 10)
	var wg sync.WaitGroup
	es := make([]*election.Election, 2)
	for i, cli := range []*clientv3.Client{cutCli, otherCli} {
		e, err := election.New(cli, name, election.WithTTL(ttl))
		require.NoError(t, err)
		es[i] = e
		wg.Add(1)
		go func() {
			defer wg.Done()
			e.Run(rctx, election.Callbacks{
				OnStartedLeading: func(ctx context.Context) {
					k := d.begin(i, e.Rev())
					defer d.end(k)
					starts <- start{i, time.Now()}
					<-ctx.Done()
					cancelled <- time.Now()
					causes <- context.Cause(ctx)
				},
				OnStoppedLeading: func() {
					d.stop(i)
					if i == 0 {
						stopped <- time.Now()
					}
				},
			})
		}()
		if i == 0 {
			// Candidate 0 leads first.
			require.Equal(t, 0, testkit.Recv(t, starts).who)
		}
	}
	waitQueued(t, otherCli, name, 2)

	// Watch the health check while the network is cut: it should report
	// overdue renewals before the loss. etcd gives no event for "time
	// passed", so this samples.
	var overdue time.Time
	probeDone := make(chan struct{})
	go func() {
		defer close(probeDone)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for es[0].IsLeader() {
			if err := es[0].Healthy(); errors.Is(err, election.ErrRenewalOverdue) && overdue.IsZero() {
				overdue = time.Now()
			}
			<-tick.C
		}
	}()

	cut := time.Now()
	proxy.Cut()
	lost := testkit.Recv(t, cancelled)
	require.ErrorIs(t, testkit.Recv(t, causes), election.ErrLost, "the duties' ctx says why")
	next := testkit.Recv(t, starts)
	require.Equal(t, 1, next.who)
	told := testkit.Recv(t, stopped)
	<-probeDone
	t.Logf("TTL %v: cut -> old leader's duties cancelled %v, -> its OnStoppedLeading %v, -> new leader's duties start %v",
		ttl, lost.Sub(cut).Round(time.Millisecond), told.Sub(cut).Round(time.Millisecond), next.at.Sub(cut).Round(time.Millisecond))
	if !overdue.IsZero() {
		t.Logf("Healthy reported overdue renewals %v after the cut, %v before the loss",
			overdue.Sub(cut).Round(time.Millisecond), lost.Sub(overdue).Round(time.Millisecond))
	}
	require.True(t, next.at.After(lost), "the new leader started before the old one's duties were cancelled")
	require.True(t, next.at.After(told), "the new leader started before the old one's OnStoppedLeading")

	// Healed, the old leader lines up again behind the new one.
	proxy.Heal()
	waitQueued(t, otherCli, name, 2)
	require.NoError(t, es[1].Resign(ctx))
	require.Equal(t, 0, testkit.Recv(t, starts).who)
	stop()
	wg.Wait()
	d.check()
}
