package etcdclient_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/leasekit/leasekit/embedtest"
	"github.com/leasekit/leasekit/etcdclient"
	"github.com/leasekit/leasekit/internal/testkit"
)

func TestConfigSettings(t *testing.T) {
	cfg := etcdclient.Config("127.0.0.1:2379", "127.0.0.1:22379")
	require.Equal(t, []string{"127.0.0.1:2379", "127.0.0.1:22379"}, cfg.Endpoints)
	require.Positive(t, cfg.DialTimeout)
	require.Positive(t, cfg.DialKeepAliveTime)
	require.Positive(t, cfg.DialKeepAliveTimeout)
	require.Len(t, cfg.DialOptions, len(etcdclient.DialOptions()))
	require.NotEmpty(t, cfg.DialOptions)
	require.NotNil(t, cfg.Logger, "a nil Logger makes clientv3 log to stderr")
	require.False(t, cfg.Logger.Core().Enabled(zap.ErrorLevel), "the default Logger discards")

	// Each call returns its own slices: changing a Config changes nothing else.
	eps := []string{"a"}
	cfg = etcdclient.Config(eps...)
	cfg.Endpoints[0] = "changed"
	cfg.DialOptions[0] = nil
	require.Equal(t, "a", eps[0])
	require.NotNil(t, etcdclient.Config("a").DialOptions[0])
}

// A client from Config gets back to work after a partition: one whose
// connection was cut while in use, and one whose first connection was
// made during the cut.
func TestConfigReconnectsAfterCut(t *testing.T) {
	c := embedtest.New(t)
	for _, tc := range []struct {
		name        string
		dialDuring  bool // dial while the proxy is cut
		useBeforeIt bool
	}{
		{name: "established", useBeforeIt: true},
		{name: "first handshake", dialDuring: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testkit.Context(t)
			p, err := c.NewProxy(0)
			require.NoError(t, err)
			defer p.Close()
			if tc.dialDuring {
				p.Cut()
			}
			cli, err := clientv3.New(etcdclient.Config(p.Endpoint()))
			require.NoError(t, err)
			defer cli.Close()
			if tc.useBeforeIt {
				_, err := cli.Put(ctx, "k", "before")
				require.NoError(t, err)
				p.Cut()
			}

			// A request during the cut goes nowhere.
			short, cancelShort := context.WithTimeout(ctx, 300*time.Millisecond)
			_, err = cli.Get(short, "k")
			cancelShort()
			require.ErrorIs(t, err, context.DeadlineExceeded)

			// One in flight when the network returns completes, and so do
			// the ones after it. Get and Put wait for a connection, so no
			// retry loop: each succeeds once the client has reconnected
			// or fails when ctx ends.
			pending := make(chan error, 1)
			go func() {
				_, err := cli.Get(ctx, "k")
				pending <- err
			}()
			p.Heal()
			require.NoError(t, <-pending)
			_, err = cli.Put(ctx, "k", "after")
			require.NoError(t, err)
		})
	}
}
