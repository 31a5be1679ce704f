package queue

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/leasekit/leasekit/embedtest"
)

// TestStillThereGivesUpOnErrorsThatStay: the check a self-watch makes
// after a compaction must not re-send a read that will fail the same way
// again (it used to spin on it until its ctx ended): a closed client, a
// user without the right to read the key.
func TestStillThereGivesUpOnErrorsThatStay(t *testing.T) {
	c := embedtest.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	closed, err := c.NewClient()
	require.NoError(t, err)
	require.NoError(t, closed.Close())

	root := c.Client()
	for _, step := range []func() error{
		func() error { _, err := root.RoleAdd(ctx, "root"); return err },
		func() error { _, err := root.UserAdd(ctx, "root", "root-pw"); return err },
		func() error { _, err := root.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := root.UserAdd(ctx, "nobody", "nobody-pw"); return err },
		func() error { _, err := root.AuthEnable(ctx); return err },
	} {
		require.NoError(t, step())
	}
	nobody, err := c.NewClient(clientv3.Config{Username: "nobody", Password: "nobody-pw"})
	require.NoError(t, err)

	for name, cli := range map[string]*clientv3.Client{"closed client": closed, "permission denied": nobody} {
		t.Run(name, func(t *testing.T) {
			e := New(cli, "/q/", Rule{N: 1}).newEntry("/q/k", context.Background())
			e.rev = 1
			// Far longer than a refusal takes: a retry loop runs until it
			// ends.
			sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			require.Zero(t, e.stillThere(sctx))
			require.NoError(t, sctx.Err(), "stillThere retried until its ctx ended")
			require.NoError(t, e.Err(), "a refused read says nothing of the key")
		})
	}
}
