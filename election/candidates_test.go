package election_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/leasekit/leasekit/election"
	"github.com/leasekit/leasekit/embedtest"
	"github.com/leasekit/leasekit/etcdlock"
	"github.com/leasekit/leasekit/internal/testkit"
)

func TestCandidatesInOrder(t *testing.T) {
	c := embedtest.New(t)
	ctx := testkit.Context(t)
	obs, err := election.New(c.Client(), "line/up")
	require.NoError(t, err)
	require.Equal(t, election.DefaultPrefix+"line%2Fup/", obs.KeyPrefix())
	line, err := obs.Candidates(ctx)
	require.NoError(t, err)
	require.Empty(t, line, "Candidates with nobody campaigning")
	first := candidate(t, c, "line/up")
	require.NoError(t, first.Campaign(ctx, "a"))
	second := candidate(t, c, "line/up")
	done := make(chan error, 1)
	go func() { done <- second.Campaign(ctx, "b") }()
	testkit.AwaitKeysAtLeast(t, c.Client(), obs.KeyPrefix(), 2)

	line, err = obs.Candidates(ctx)
	require.NoError(t, err)
	require.Len(t, line, 2)
	require.Equal(t, "a", line[0].Value)
	require.Equal(t, "b", line[1].Value)
	require.Equal(t, first.Rev(), line[0].Rev, "the first leads")
	require.Equal(t, first.EtcdKey(), line[0].EtcdKey)
	require.NotZero(t, line[0].LeaseID)
	require.Greater(t, line[1].Rev, line[0].Rev)
	// Key and Token mean what they mean on an etcdlock.Lock: the name and
	// the fencing token.
	require.Equal(t, "line/up", first.Key())
	require.Equal(t, first.Rev(), first.Token())
	require.True(t, strings.HasPrefix(first.EtcdKey(), obs.KeyPrefix()), first.EtcdKey())
	require.NoError(t, first.Resign(ctx))
	require.NoError(t, <-done)
	line, err = obs.Candidates(ctx)
	require.NoError(t, err)
	require.Len(t, line, 1, "after the handover")
	require.Equal(t, second.Rev(), line[0].Rev)
}

// fence is what a lock and an election share for fencing writes: a name,
// a token, a guard and the end of the hold.
type fence interface {
	Key() string
	Token() int64
	Guard() clientv3.Cmp
	Done() <-chan struct{}
	Err() error
}

var (
	_ fence = (*election.Election)(nil)
	_ fence = etcdlock.Lock(nil)
)
