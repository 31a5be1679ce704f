package election_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/leasekit/leasekit/election"
	"github.com/leasekit/leasekit/embedtest"
	"github.com/leasekit/leasekit/internal/testkit"
)

func TestNewBadInput(t *testing.T) {
	c := embedtest.New(t)
	cli := c.Client()
	for _, tc := range []struct {
		name  string
		cli   *clientv3.Client
		elect string
		opts  []election.Option
		want  error
	}{
		{"nil client", nil, "x", nil, election.ErrInvalidOption},
		{"empty name", cli, "", nil, election.ErrInvalidName},
		{"name not UTF-8", cli, "\xff", nil, election.ErrInvalidName},
		{"name too long", cli, strings.Repeat("n", election.MaxNameLen+1), nil, election.ErrInvalidName},
		{"zero TTL", cli, "x", []election.Option{election.WithTTL(0)}, election.ErrInvalidTTL},
		{"negative TTL", cli, "x", []election.Option{election.WithTTL(-time.Second)}, election.ErrInvalidTTL},
		{"TTL above etcd's maximum", cli, "x", []election.Option{election.WithTTL(election.MaxTTL + time.Second)}, election.ErrInvalidTTL},
		{"empty prefix", cli, "x", []election.Option{election.WithPrefix("")}, election.ErrInvalidOption},
		{"nil logger", cli, "x", []election.Option{election.WithLogger(nil)}, election.ErrInvalidOption},
		{"nil metrics", cli, "x", []election.Option{election.WithMetrics(nil)}, election.ErrInvalidOption},
		{"nil option", cli, "x", []election.Option{nil}, election.ErrInvalidOption},
		{"value too long", cli, "x", []election.Option{election.WithValue(strings.Repeat("v", election.MaxValueLen+1))}, election.ErrInvalidValue},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, err := election.New(tc.cli, tc.elect, tc.opts...)
			require.ErrorIs(t, err, tc.want)
			require.Nil(t, e)
		})
	}

	e, err := election.New(cli, "x")
	require.NoError(t, err)
	ctx := testkit.Context(t)
	require.ErrorIs(t, e.Campaign(ctx, strings.Repeat("v", election.MaxValueLen+1)), election.ErrInvalidValue)
	require.ErrorIs(t, e.Run(ctx, election.Callbacks{}), election.ErrInvalidOption)
	require.ErrorIs(t, e.Run(ctx, election.Callbacks{OnStartedLeading: func(context.Context) {},
		OnStoppedLeading: func() {}, OnStoppedLeadingCause: func(error) {}}), election.ErrInvalidOption)
	require.ErrorIs(t, e.Proclaim(ctx, "v"), election.ErrNotLeader)
	_, err = e.Txn(ctx, clientv3.OpPut("k", "v"))
	require.ErrorIs(t, err, election.ErrNotLeader)
	require.ErrorIs(t, e.Err(), election.ErrNotLeader)
	require.NoError(t, e.Resign(ctx), "resigning without a term is a no-op")
	select {
	case <-e.Done():
	default:
		require.FailNow(t, "Done is open without a term")
	}
}

func TestCampaignFIFOTermsIncrease(t *testing.T) {
	c := embedtest.New(t)
	ctx := testkit.Context(t)
	const name = "fifo"
	es := []*election.Election{candidate(t, c, name), candidate(t, c, name), candidate(t, c, name)}
	observer := candidate(t, c, name)

	_, err := observer.Leader(ctx)
	require.ErrorIs(t, err, election.ErrNoLeader)

	require.NoError(t, es[0].Campaign(ctx, "a"))
	require.True(t, es[0].IsLeader())
	// Line up b, then c, so that FIFO says who is next.
	won := []<-chan error{nil, campaignAsync(ctx, es[1], "b")}
	waitQueued(t, c.Client(), name, 2)
	won = append(won, campaignAsync(ctx, es[2], "c"))
	waitQueued(t, c.Client(), name, 3)

	var last int64
	for i, want := range []string{"a", "b", "c"} {
		if i > 0 {
			require.NoError(t, es[i-1].Resign(ctx))
			require.False(t, es[i-1].IsLeader())
			require.NoError(t, testkit.Recv(t, won[i]))
		}
		l, err := observer.Leader(ctx)
		require.NoError(t, err)
		require.Equal(t, want, l.Value)
		require.Equal(t, es[i].Rev(), l.Rev)
		require.Greater(t, l.Rev, last, "terms increase")
		last = l.Rev
		require.True(t, es[i].IsLeader())
		require.NoError(t, es[i].Err())
		for j := i + 1; j < len(es); j++ {
			require.False(t, es[j].IsLeader(), "candidate %d leads while %d does", j, i)
		}
	}
	require.NoError(t, es[2].Resign(ctx))
	_, err = observer.Leader(ctx)
	require.ErrorIs(t, err, election.ErrNoLeader)
}

func TestProclaimKeepsTerm(t *testing.T) {
	c := embedtest.New(t)
	ctx := testkit.Context(t)
	a, b := candidate(t, c, "proclaim"), candidate(t, c, "proclaim")
	require.NoError(t, a.Campaign(ctx, "v1"))
	rev := a.Rev()
	require.NoError(t, a.Proclaim(ctx, "v2"))
	l, err := b.Leader(ctx)
	require.NoError(t, err)
	require.Equal(t, election.Leader{Value: "v2", Rev: rev}, l)

	// Campaign while leading keeps the term too.
	require.NoError(t, a.Campaign(ctx, "v3"))
	require.Equal(t, rev, a.Rev())
	l, err = b.Leader(ctx)
	require.NoError(t, err)
	require.Equal(t, election.Leader{Value: "v3", Rev: rev}, l)

	require.ErrorIs(t, b.Proclaim(ctx, "x"), election.ErrNotLeader)
	require.NoError(t, a.Resign(ctx))
	require.ErrorIs(t, a.Proclaim(ctx, "v4"), election.ErrNotLeader)
}

func TestGuardedWrites(t *testing.T) {
	c := embedtest.New(t)
	ctx := testkit.Context(t)
	admin := c.Client()
	a := candidate(t, c, "guard")
	require.NoError(t, a.Campaign(ctx, "a"))

	_, err := a.Txn(ctx, clientv3.OpPut("/data/x", "1"))
	require.NoError(t, err)
	resp, err := admin.Txn(ctx).If(a.Guard()).Then(clientv3.OpPut("/data/y", "1")).Commit()
	require.NoError(t, err)
	require.True(t, resp.Succeeded)

	// Someone deletes the leader's key: leadership is lost, and both the
	// local view and etcd's check say so.
	_, err = admin.Delete(ctx, a.EtcdKey())
	require.NoError(t, err)
	testkit.Recv(t, doneChan(a.Done()))
	require.ErrorIs(t, a.Err(), election.ErrLost)
	require.False(t, a.IsLeader())
	_, err = a.Txn(ctx, clientv3.OpPut("/data/x", "2"))
	require.ErrorIs(t, err, election.ErrNotLeader)
	resp, err = admin.Txn(ctx).If(a.Guard()).Then(clientv3.OpPut("/data/y", "2")).Commit()
	require.NoError(t, err)
	require.False(t, resp.Succeeded)

	// A new campaign replaces the lost term.
	require.NoError(t, a.Campaign(ctx, "a"))
	require.True(t, a.IsLeader())
}

// doneChan turns a closed-when-done channel into one that yields a value.
func doneChan(done <-chan struct{}) <-chan struct{} {
	ch := make(chan struct{}, 1)
	go func() {
		<-done
		ch <- struct{}{}
	}()
	return ch
}

// A waiting candidate whose key goes stops waiting with ErrLost, and
// must not go on to "win" with no key (etcd #11051: the key deleted;
// #19597: its lease revoked). The leader is untouched, and the candidate
// can campaign again.
func TestCampaignNoticesOwnKeyGone(t *testing.T) {
	c := embedtest.New(t)
	ctx := testkit.Context(t)
	admin := c.Client()
	for _, tc := range []struct {
		name string
		kill func(t *testing.T, key string)
	}{
		{"key-deleted", func(t *testing.T, key string) {
			_, err := admin.Delete(ctx, key)
			require.NoError(t, err)
		}},
		{"lease-revoked", func(t *testing.T, key string) {
			resp, err := admin.Get(ctx, key)
			require.NoError(t, err)
			_, err = admin.Revoke(ctx, clientv3.LeaseID(resp.Kvs[0].Lease))
			require.NoError(t, err)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := candidate(t, c, tc.name), candidate(t, c, tc.name)
			require.NoError(t, a.Campaign(ctx, "a"))
			won := campaignAsync(ctx, b, "b")
			keys := waitQueued(t, admin, tc.name, 2)
			tc.kill(t, keys[1])
			require.ErrorIs(t, testkit.Recv(t, won), election.ErrLost)
			require.False(t, b.IsLeader())
			require.True(t, a.IsLeader())
			won = campaignAsync(ctx, b, "b")
			waitQueued(t, admin, tc.name, 2)
			require.NoError(t, a.Resign(ctx))
			require.NoError(t, testkit.Recv(t, won))
			require.True(t, b.IsLeader())
		})
	}
}

// Deleting the whole election (etcdctl del --prefix) deletes the leader's
// key and a waiting candidate's in one revision. The candidate must not
// end up leading with its key gone: either Campaign fails, or the term it
// won ends as a loss at once.
func TestDeletePrefixWhileWaiting(t *testing.T) {
	c := embedtest.New(t)
	ctx := testkit.Context(t)
	admin := c.Client()
	for i := range 5 {
		name := fmt.Sprintf("wipe-%d", i)
		a, b := candidate(t, c, name), candidate(t, c, name)
		require.NoError(t, a.Campaign(ctx, "a"))
		won := campaignAsync(ctx, b, "b")
		waitQueued(t, admin, name, 2)
		_, err := admin.Delete(ctx, election.DefaultPrefix+name+"/", clientv3.WithPrefix())
		require.NoError(t, err)
		if err := testkit.Recv(t, won); err != nil {
			require.ErrorIs(t, err, election.ErrLost)
		} else {
			testkit.Recv(t, doneChan(b.Done()))
			require.ErrorIs(t, b.Err(), election.ErrLost)
		}
		require.False(t, b.IsLeader())
		_, err = b.Txn(ctx, clientv3.OpPut("/wiped", "b"))
		require.ErrorIs(t, err, election.ErrNotLeader)
		testkit.Recv(t, doneChan(a.Done()))
		require.ErrorIs(t, a.Err(), election.ErrLost)
		_, err = a.Leader(ctx)
		require.ErrorIs(t, err, election.ErrNoLeader)
	}
}

func TestCampaignContextEnds(t *testing.T) {
	c := embedtest.New(t)
	ctx := testkit.Context(t)
	admin := c.Client()
	a, b := candidate(t, c, "ctx"), candidate(t, c, "ctx")
	require.NoError(t, a.Campaign(ctx, "a"))

	cctx, cancel := context.WithCancel(ctx)
	won := campaignAsync(cctx, b, "b")
	waitQueued(t, admin, "ctx", 2)
	cancel()
	require.ErrorIs(t, testkit.Recv(t, won), context.Canceled)

	dctx, dcancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer dcancel()
	require.ErrorIs(t, b.Campaign(dctx, "b"), context.DeadlineExceeded)

	// Neither attempt left a key behind.
	resp, err := admin.Get(ctx, election.DefaultPrefix+"ctx/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	require.NoError(t, err)
	require.EqualValues(t, 1, resp.Count)
}

func TestCampaignBusy(t *testing.T) {
	c := embedtest.New(t)
	ctx := testkit.Context(t)
	a, b := candidate(t, c, "busy"), candidate(t, c, "busy")
	require.NoError(t, a.Campaign(ctx, "a"))
	cctx, cancel := context.WithCancel(ctx)
	won := campaignAsync(cctx, b, "b")
	waitQueued(t, c.Client(), "busy", 2)
	require.ErrorIs(t, b.Campaign(ctx, "again"), election.ErrBusy)
	require.ErrorIs(t, b.Run(ctx, election.Callbacks{OnStartedLeading: func(context.Context) {}}), election.ErrBusy)
	cancel()
	require.Error(t, testkit.Recv(t, won))
}

func TestNamesDoNotCollide(t *testing.T) {
	c := embedtest.New(t)
	ctx := testkit.Context(t)
	names := []string{"a", "a/", "a/b", "a%2Fb"}
	for _, n := range names {
		e := candidate(t, c, n)
		require.NoError(t, e.Campaign(ctx, n), "every name has its own leader")
	}
	for _, n := range names {
		l, err := candidate(t, c, n).Leader(ctx)
		require.NoError(t, err)
		require.Equal(t, n, l.Value)
	}
}

func TestTTL(t *testing.T) {
	c := embedtest.New(t)
	ctx := testkit.Context(t)
	e := candidate(t, c, "ttl", election.WithTTL(1500*time.Millisecond))
	require.Equal(t, 2*time.Second, e.TTL(), "rounded up to whole seconds")
	require.NoError(t, e.Campaign(ctx, "v"))
	require.GreaterOrEqual(t, e.TTL(), 2*time.Second)
	resp, err := c.Client().TimeToLive(ctx, clientv3.LeaseID(leaseOf(t, c.Client(), e.EtcdKey())))
	require.NoError(t, err)
	require.Equal(t, int64(e.TTL()/time.Second), resp.GrantedTTL)
	// etcd counts the TTL from when it received the grant or the last
	// renewal, which is after the client sent it.
	require.False(t, e.ExpiresAt().After(time.Now().Add(e.TTL())), "expiry %v is too late", e.ExpiresAt())
	require.NoError(t, e.Resign(ctx))
	require.True(t, e.ExpiresAt().IsZero())
}

func leaseOf(t *testing.T, cli *clientv3.Client, key string) int64 {
	t.Helper()
	resp, err := cli.Get(context.Background(), key)
	require.NoError(t, err)
	require.Len(t, resp.Kvs, 1)
	return resp.Kvs[0].Lease
}

var _ = errors.Is
