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
	"github.com/leasekit/leasekit/internal/testkit"
)

func TestTLS(t *testing.T) {
	c := embedtest.New(t, embedtest.WithTLS())
	ctx := testkit.Context(t)
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

// TestTLSClientCertAuth turns etcd auth on with EnableAuth and checks
// AddUser's users: a client certificate's common name is the user, as is
// the password login AddUser returns; a read grant reads and cannot
// write; a client without credentials is refused.
func TestTLSClientCertAuth(t *testing.T) {
	c := embedtest.New(t, embedtest.WithTLS())
	ctx := testkit.Context(t)
	_, err := c.AddUser(ctx, "alice")
	require.ErrorIs(t, err, embedtest.ErrAuthOff)
	root, err := c.EnableAuth(ctx)
	require.NoError(t, err)
	byPassword, err := c.AddUser(ctx, "alice", embedtest.Grant{Prefix: "/alice/", Perm: clientv3.PermissionType(clientv3.PermReadWrite)})
	require.NoError(t, err)
	reader, err := c.AddUser(ctx, "reader", embedtest.Grant{Prefix: "/alice/", Perm: clientv3.PermissionType(clientv3.PermRead)})
	require.NoError(t, err)
	alice, err := c.NewCertClient("alice")
	require.NoError(t, err)

	_, err = alice.Put(ctx, "/alice/k", "v")
	require.NoError(t, err, "the certificate's common name is the user")
	_, err = alice.Put(ctx, "/bob/k", "v")
	require.ErrorContains(t, err, "permission denied")
	resp, err := byPassword.Get(ctx, "/alice/k")
	require.NoError(t, err)
	require.Equal(t, int64(1), resp.Count)
	_, err = reader.Get(ctx, "/alice/k")
	require.NoError(t, err)
	_, err = reader.Put(ctx, "/alice/k", "w")
	require.ErrorContains(t, err, "permission denied")
	_, err = root.Put(ctx, "/bob/k", "v")
	require.NoError(t, err)
	_, err = c.Client().Get(ctx, "/alice/k")
	require.Error(t, err, "a client without credentials is refused")

	_, err = embedtest.New(t).ClientCert("x")
	require.ErrorIs(t, err, embedtest.ErrInvalidOption)
}

// Rejoin changes the membership through a client of its own, which must
// log in as root once auth is on.
func TestRejoinWithAuth(t *testing.T) {
	c := embedtest.New(t, embedtest.WithMembers(3))
	ctx := testkit.Context(t)
	root, err := c.EnableAuth(ctx)
	require.NoError(t, err)
	require.NoError(t, c.Member(2).KillAndWipe())
	require.NoError(t, c.Member(2).Rejoin(ctx))
	list, err := root.MemberList(ctx)
	require.NoError(t, err)
	require.Len(t, list.Members, 3)
}
