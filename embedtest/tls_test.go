package embedtest_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/leasekit/leasekit/embedtest"
)

func TestTLS(t *testing.T) {
	c := embedtest.New(t, embedtest.WithTLS())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, ep := range c.Endpoints() {
		require.True(t, strings.HasPrefix(ep, "https://127.0.0.1:"), ep)
	}
	_, err := c.Client().Put(ctx, "k", "v")
	require.NoError(t, err)

	// Through a proxy, with the files a subprocess would get.
	p, err := c.NewProxy(0)
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(p.Endpoint(), "https://"), p.Endpoint())
	cfg, err := c.TLSFiles().ClientConfig()
	require.NoError(t, err)
	cli, err := c.NewClient(clientv3.Config{Endpoints: []string{p.Endpoint()}, TLS: cfg})
	require.NoError(t, err)
	resp, err := cli.Get(ctx, "k")
	require.NoError(t, err)
	require.Equal(t, "v", string(resp.Kvs[0].Value))

	// A client certificate is required: the CA alone is refused.
	caOnly, err := embedtest.TLSFiles{CA: c.TLSFiles().CA}.ClientConfig()
	require.NoError(t, err)
	refused(t, clientv3.Config{Endpoints: c.Endpoints(), TLS: caOnly})
	// So is plain text.
	refused(t, clientv3.Config{Endpoints: []string{strings.Replace(c.Endpoints()[0], "https", "http", 1)}})
}

// refused checks that a client of cfg cannot read.
func refused(t *testing.T, cfg clientv3.Config) {
	t.Helper()
	cfg.DialTimeout = 5 * time.Second
	cfg.Logger = zap.NewNop()
	cli, err := clientv3.New(cfg)
	require.NoError(t, err)
	defer cli.Close()
	// A refusal never turns into an answer; a second is plenty for an
	// answer that should not come.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, err = cli.Get(ctx, "k")
	require.Error(t, err)
}

// TestTLSClientCertAuth turns etcd auth on and checks that a client
// certificate's common name is the user.
func TestTLSClientCertAuth(t *testing.T) {
	c := embedtest.New(t, embedtest.WithTLS())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	root := c.Client()
	for _, step := range []func() error{
		func() error { _, err := root.RoleAdd(ctx, "root"); return err },
		func() error { _, err := root.UserAdd(ctx, "root", "root-pw"); return err },
		func() error { _, err := root.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := root.UserAdd(ctx, "alice", "alice-pw"); return err },
		func() error { _, err := root.RoleAdd(ctx, "alice"); return err },
		func() error {
			_, err := root.RoleGrantPermission(ctx, "alice", "/alice/", clientv3.GetPrefixRangeEnd("/alice/"), clientv3.PermissionType(clientv3.PermReadWrite))
			return err
		},
		func() error { _, err := root.UserGrantRole(ctx, "alice", "alice"); return err },
		func() error { _, err := root.AuthEnable(ctx); return err },
	} {
		require.NoError(t, step())
	}
	files, err := c.ClientCert("alice")
	require.NoError(t, err)
	cfg, err := files.ClientConfig()
	require.NoError(t, err)
	alice, err := c.NewClient(clientv3.Config{TLS: cfg})
	require.NoError(t, err)
	_, err = alice.Put(ctx, "/alice/k", "v")
	require.NoError(t, err, "the certificate's common name is the user")
	_, err = alice.Put(ctx, "/bob/k", "v")
	require.ErrorContains(t, err, "permission denied")

	_, err = embedtest.New(t).ClientCert("x")
	require.ErrorIs(t, err, embedtest.ErrInvalidOption)
}
