package embedtest_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/leasekit/leasekit/embedtest"
	"github.com/leasekit/leasekit/internal/testkit"
)

func TestPartitionLeader(t *testing.T) {
	c := embedtest.New(t, embedtest.WithMembers(3))
	ctx := testkit.Context(t)

	lead, err := c.WaitLeader(ctx)
	require.NoError(t, err)
	var others []string
	for i := range c.Members() {
		if i != lead {
			others = append(others, c.Member(i).ClientURL())
		}
	}
	majority, err := c.NewClient(clientv3.Config{Endpoints: others})
	require.NoError(t, err)
	minority, err := c.NewClient(clientv3.Config{Endpoints: []string{c.Member(lead).ClientURL()}})
	require.NoError(t, err)

	require.NoError(t, c.Partition(lead))
	require.NoError(t, c.Partition(lead), "partitioning twice is harmless")

	next, err := c.WaitLeader(ctx)
	require.NoError(t, err)
	require.NotEqual(t, lead, next, "the two connected members elect a leader")

	_, err = majority.Put(ctx, "k", "during")
	require.NoError(t, err)

	// The cut-off member cannot serve a linearizable read: it has no quorum.
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	_, err = minority.Get(short, "k")
	cancel()
	require.Error(t, err)

	require.NoError(t, c.Heal(lead))
	// A linearizable read through the healed member succeeds once it has
	// caught up with the leader; until then it fails and is retried.
	require.NoError(t, testkit.Retry(ctx, func(ctx context.Context) error {
		resp, err := minority.Get(ctx, "k")
		if err == nil {
			require.Len(t, resp.Kvs, 1)
			require.Equal(t, "during", string(resp.Kvs[0].Value))
		}
		return err
	}))
	_, err = c.WaitLeader(ctx)
	require.NoError(t, err)
}
