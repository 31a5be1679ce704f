package testkit

import (
	"testing"

	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/leasekit/leasekit/embedtest"
)

// MemberClient returns a client of c that talks to the given members
// only, so that it cannot fail over to the others: a fault of those
// members (Partition, Stop) is its own. c closes it.
func MemberClient(tb testing.TB, c *embedtest.Cluster, members ...int) *clientv3.Client {
	tb.Helper()
	var eps []string
	for _, i := range members {
		eps = append(eps, c.Member(i).ClientURL())
	}
	cli, err := c.NewClient(clientv3.Config{Endpoints: eps})
	require.NoError(tb, err)
	return cli
}

// Proxied returns a proxy in front of member i of c and a client whose
// only endpoint is that proxy, so that the proxy's faults (Cut,
// SetLatency) are the client's. c closes both.
func Proxied(tb testing.TB, c *embedtest.Cluster, i int) (*embedtest.Proxy, *clientv3.Client) {
	tb.Helper()
	p, err := c.NewProxy(i)
	require.NoError(tb, err)
	cli, err := c.NewClient(clientv3.Config{Endpoints: []string{p.Endpoint()}})
	require.NoError(tb, err)
	return p, cli
}
