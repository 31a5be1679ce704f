package etcdlock_test

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/leasekit/leasekit/embedtest"
	"github.com/leasekit/leasekit/etcdlock"
	"github.com/leasekit/leasekit/internal/testkit"
)

// TestTLSAuth runs locks over TLS with client certificates required and
// etcd auth on: a user logged in by password and the same user known by
// its certificate alone hand a lock to each other; a certificate of a
// user without rights is refused at once.
func TestTLSAuth(t *testing.T) {
	c := embedtest.New(t, embedtest.WithTLS())
	ctx := testkit.Context(t)
	u := testkit.AuthUsers(t, c)
	root, byPassword, byCert, nobody := u.Root, u.App, u.AppCert, u.NobodyCert

	first := newLocker(t, byPassword)
	second := newLocker(t, byCert)
	lk, err := first.LockWithOptions(ctx, etcdlock.LockOptions{Key: "tls", TTL: 5 * time.Second, AutoRefresh: true})
	require.NoError(t, err)
	got := make(chan result, 1)
	go func() {
		lk, err := second.Lock(ctx, "tls", 5*time.Second)
		got <- result{lk, err}
	}()
	testkit.AwaitKeys(t, root, etcdlock.DefaultPrefix, 2)
	resp, err := byPassword.Txn(ctx).If(lk.Guard()).Then(clientv3.OpPut("/leasekit/data", "first")).Commit()
	require.NoError(t, err)
	require.True(t, resp.Succeeded)
	require.NoError(t, lk.Release(ctx))
	r := <-got
	require.NoError(t, r.err)
	require.Greater(t, r.lk.Token(), lk.Token())
	require.NoError(t, r.lk.Release(ctx))

	refused := newLocker(t, nobody)
	start := time.Now()
	_, err = refused.Lock(ctx, "tls", 5*time.Second)
	require.True(t, errors.Is(err, rpctypes.ErrPermissionDenied), "%v", err)
	require.Less(t, time.Since(start), testkit.AuthPrompt)
}
