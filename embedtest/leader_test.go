package embedtest_test

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/leasekit/leasekit/embedtest"
	"github.com/leasekit/leasekit/internal/testkit"
)

func TestWaitLeaderSingleMember(t *testing.T) {
	c := embedtest.New(t)
	lead, err := c.WaitLeader(testkit.Context(t))
	require.NoError(t, err)
	require.Equal(t, 0, lead)
	require.NotZero(t, c.Member(0).ID())
}

func TestMoveLeader(t *testing.T) {
	c := embedtest.New(t, embedtest.WithMembers(3))
	ctx := testkit.Context(t)

	ids := map[uint64]bool{}
	for i := range c.Members() {
		ids[c.Member(i).ID()] = true
	}
	require.Len(t, ids, 3, "member IDs must differ")

	lead, err := c.WaitLeader(ctx)
	require.NoError(t, err)
	require.NoError(t, c.MoveLeader(ctx, lead), "moving to the leader is a no-op")

	to := (lead + 1) % c.Members()
	require.NoError(t, c.MoveLeader(ctx, to))
	got, err := c.WaitLeader(ctx)
	require.NoError(t, err)
	require.Equal(t, to, got)

	// The cluster agrees: etcd's own status says the same through any member.
	st, err := c.Client().Status(ctx, c.Member(lead).ClientURL())
	require.NoError(t, err)
	require.Equal(t, c.Member(to).ID(), st.Leader)

	// A crashed leader gives way to a new one, and IDs survive Restart.
	id := c.Member(to).ID()
	require.NoError(t, c.Member(to).Kill())
	next, err := c.WaitLeader(ctx)
	require.NoError(t, err)
	require.NotEqual(t, to, next)
	require.NoError(t, c.Member(to).Restart(ctx))
	require.Equal(t, id, c.Member(to).ID())
	_, err = c.WaitLeader(ctx)
	require.NoError(t, err)
}

// TestMinLeaseTTL checks what the package doc promises: etcd grants a 1s
// lease as asked, where its production timing would raise it to 2s.
func TestMinLeaseTTL(t *testing.T) {
	for _, members := range []int{1, 3} {
		t.Run(fmt.Sprint(members), func(t *testing.T) {
			c := embedtest.New(t, embedtest.WithMembers(members))
			resp, err := c.Client().Grant(testkit.Context(t), 1)
			require.NoError(t, err)
			require.EqualValues(t, 1, resp.TTL)
		})
	}
}
