package testkit

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/leasekit/leasekit/embedtest"
)

// AuthPrompt is how long a call that etcd's auth refuses may take: one
// round trip, plus the bounded cleanup of a lease granted before the
// refusal. A retry loop would take until the call's context ends.
const AuthPrompt = 3 * time.Second

// Users are the clients of a cluster with etcd's auth on that the auth
// tests of every package use: Root; App, the user "app", whose role may
// read and write the leasekit prefix /leasekit/; Reader, the user
// "reader", who may only read it; and Nobody, the user "nobody", with no
// role. Their passwords are the name + "-password" (embedtest.AddUser).
// Under embedtest.WithTLS, AppCert and NobodyCert are App and Nobody
// known by their certificates alone (embedtest.NewCertClient).
type Users struct {
	Root, App, Reader, Nobody *clientv3.Client
	AppCert, NobodyCert       *clientv3.Client
}

// AuthUsers turns auth on in c (embedtest.Cluster.EnableAuth) and adds
// the users of Users.
func AuthUsers(tb testing.TB, c *embedtest.Cluster) Users {
	tb.Helper()
	ctx := Context(tb)
	var u Users
	var err error
	u.Root, err = c.EnableAuth(ctx)
	require.NoError(tb, err)
	u.App, err = c.AddUser(ctx, "app", embedtest.Grant{Prefix: "/leasekit/", Perm: clientv3.PermissionType(clientv3.PermReadWrite)})
	require.NoError(tb, err)
	u.Reader, err = c.AddUser(ctx, "reader", embedtest.Grant{Prefix: "/leasekit/", Perm: clientv3.PermissionType(clientv3.PermRead)})
	require.NoError(tb, err)
	u.Nobody, err = c.AddUser(ctx, "nobody")
	require.NoError(tb, err)
	if u.AppCert, err = c.NewCertClient("app"); errors.Is(err, embedtest.ErrInvalidOption) {
		return u // no TLS
	}
	require.NoError(tb, err)
	u.NobodyCert, err = c.NewCertClient("nobody")
	require.NoError(tb, err)
	return u
}
