package embedtest_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/leasekit/leasekit/embedtest"
	"github.com/leasekit/leasekit/internal/testkit"
)

func TestKillAndWipeRejoin(t *testing.T) {
	c := embedtest.New(t, embedtest.WithMembers(3))
	ctx := testkit.Context(t)
	_, err := c.Client().Put(ctx, "before", "1")
	require.NoError(t, err)

	m := c.Member(1)
	oldID := m.ID()
	require.NoError(t, m.KillAndWipe())
	require.False(t, m.Running())
	require.ErrorIs(t, m.Restart(ctx), embedtest.ErrMemberWiped)

	// If m led, a write forwarded to it before the others notice would
	// wait out etcd's request timeout; wait for them to elect a leader.
	_, err = c.WaitLeader(ctx)
	require.NoError(t, err)
	// The shared client may still send on its connection to m and see it
	// break (Unavailable); a test of your own code must expect that too.
	require.NoError(t, testkit.Retry(ctx, func(ctx context.Context) error {
		_, err := c.Client().Put(ctx, "after", "2")
		return err
	}), "two of three members keep a quorum")

	require.NoError(t, m.Rejoin(ctx))
	require.True(t, m.Running())
	require.NotEqual(t, oldID, m.ID(), "a rejoined member has a new ID")
	require.ErrorIs(t, m.Rejoin(ctx), embedtest.ErrMemberRunning)

	list, err := c.Client().MemberList(ctx)
	require.NoError(t, err)
	require.Len(t, list.Members, 3)
	var found bool
	for _, mm := range list.Members {
		require.NotEqual(t, oldID, mm.ID, "the old member is gone")
		found = found || mm.ID == m.ID()
	}
	require.True(t, found, "the new member is listed")

	// Ready means the member applied the log up to its own join, so its
	// local (serializable) data already has both keys.
	cli, err := c.NewClient(clientv3.Config{Endpoints: []string{m.ClientURL()}})
	require.NoError(t, err)
	for _, k := range []string{"before", "after"} {
		resp, err := cli.Get(ctx, k, clientv3.WithSerializable())
		require.NoError(t, err)
		require.Len(t, resp.Kvs, 1, k)
	}

	// A member stopped with its data can rejoin as a new member too.
	require.NoError(t, c.Member(2).Stop())
	require.NoError(t, c.Member(2).Rejoin(ctx))
	_, err = c.WaitLeader(ctx)
	require.NoError(t, err)
}
