package etcdlock_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/leasekit/leasekit/embedtest"
	"github.com/leasekit/leasekit/etcdlock"
	"github.com/leasekit/leasekit/internal/testkit"
)

// TestAuth runs the auth cases on one cluster: setting auth up costs
// bcrypt hashes, which are slow under the race detector.
func TestAuth(t *testing.T) {
	u := testkit.AuthUsers(t, embedtest.New(t))
	root, app := u.Root, u.App
	t.Run("prefix user", func(t *testing.T) { testAuthPrefixUser(t, root, app) })
	t.Run("no rights", func(t *testing.T) { testAuthNoRights(t, root, u.Reader, u.Nobody) })
	// Last: it takes the app user's rights away.
	t.Run("rights revoked while held", func(t *testing.T) { testAuthRightsRevokedWhileHeld(t, root, app) })
}

// testAuthPrefixUser: a user whose role is limited to the leasekit prefix
// can use every part of a Locker.
func testAuthPrefixUser(t *testing.T, root, app *clientv3.Client) {
	ctx := testkit.Context(t)
	l := newLocker(t, app)
	for _, auto := range []bool{false, true} {
		lk, err := l.LockWithOptions(ctx, etcdlock.LockOptions{Key: "auth", TTL: 5 * time.Second, AutoRefresh: auto})
		require.NoError(t, err, "Lock (AutoRefresh=%v)", auto)
		assert.NoError(t, lk.Refresh(ctx, 5*time.Second), "Refresh")
		ok, err := lk.IsValid(ctx)
		assert.NoError(t, err, "IsValid")
		assert.True(t, ok, "IsValid")
		info, err := l.Inspect(ctx, "auth")
		if assert.NoError(t, err, "Inspect") && assert.NotNil(t, info.Holder, "Inspect") {
			assert.Equal(t, lk.Token(), info.Holder.Token, "Inspect")
		}
		_, ok, err = l.TryLock(ctx, "auth", time.Second)
		assert.NoError(t, err, "TryLock of a held lock")
		assert.False(t, ok, "TryLock of a held lock")
		assert.NoError(t, lk.Release(ctx), "Release")
	}
	ran := false
	err := etcdlock.NewManager(l).WithLock(ctx, "auth", 5*time.Second, func(context.Context) error {
		ran = true
		return nil
	})
	assert.NoError(t, err, "WithLock")
	assert.True(t, ran, "WithLock ran fn")
	assert.NoError(t, l.Close(), "Close")
	assert.Zero(t, testkit.CountKeys(t, root, etcdlock.DefaultPrefix), "keys left")
}

// testAuthNoRights: a user without rights on the prefix gets
// rpctypes.ErrPermissionDenied from every call at once, with no retry and
// nothing left behind.
func testAuthNoRights(t *testing.T, root, reader, nobody *clientv3.Client) {
	for _, u := range []struct {
		name string
		cli  *clientv3.Client
	}{{"no role", nobody}, {"read-only role", reader}} {
		t.Run(u.name, func(t *testing.T) {
			l := newLocker(t, u.cli)
			m := etcdlock.NewManager(l)
			calls := map[string]func(ctx context.Context) error{
				"Lock": func(ctx context.Context) error { _, err := l.Lock(ctx, "auth", 5*time.Second); return err },
				"Lock(AutoRefresh)": func(ctx context.Context) error {
					_, err := l.LockWithOptions(ctx, etcdlock.LockOptions{Key: "auth", TTL: 5 * time.Second, AutoRefresh: true})
					return err
				},
				"TryLock": func(ctx context.Context) error { _, _, err := l.TryLock(ctx, "auth", 5*time.Second); return err },
				"WithLock": func(ctx context.Context) error {
					return m.WithLock(ctx, "auth", 5*time.Second, func(context.Context) error { return nil })
				},
			}
			if u.cli == nobody {
				calls["Inspect"] = func(ctx context.Context) error { _, err := l.Inspect(ctx, "auth"); return err }
			}
			for name, call := range calls {
				// The context allows far longer than a refusal takes, so
				// that a retry loop shows as a slow call.
				ctx, cancel := context.WithTimeout(context.Background(), 10*testkit.AuthPrompt)
				start := time.Now()
				err := call(ctx)
				took := time.Since(start)
				cancel()
				assert.ErrorIs(t, err, rpctypes.ErrPermissionDenied, name)
				assert.LessOrEqual(t, took, testkit.AuthPrompt, "%s must be refused at once", name)
				t.Logf("%s refused in %v: %v", name, took.Round(time.Millisecond), err)
			}
			assert.NoError(t, l.Close(), "Close")
			ctx := testkit.Context(t)
			assert.Zero(t, testkit.CountKeys(t, root, etcdlock.DefaultPrefix), "keys left")
			resp, err := root.Leases(ctx)
			assert.NoError(t, err)
			assert.Empty(t, resp.Leases, "leases left")
		})
	}
}

// testAuthRightsRevokedWhileHeld: when a holder loses its rights, Release
// says so at once; the hold then ends when its lease expires, and others
// can take the lock.
func testAuthRightsRevokedWhileHeld(t *testing.T, root, app *clientv3.Client) {
	ctx := testkit.Context(t)
	l := newLocker(t, app)
	lk, err := l.Lock(ctx, "revoked", time.Second)
	require.NoError(t, err)
	_, err = root.RoleRevokePermission(ctx, "app", "/leasekit/", clientv3.GetPrefixRangeEnd("/leasekit/"))
	require.NoError(t, err)
	start := time.Now()
	assert.ErrorIs(t, lk.Release(ctx), rpctypes.ErrPermissionDenied, "Release without rights")
	assert.LessOrEqual(t, time.Since(start), testkit.AuthPrompt, "Release without rights is refused at once")
	// The change of rights makes every client log in again, which takes
	// a second under the race detector: a short TTL would not survive it.
	other := newLocker(t, root)
	next, err := other.LockWithOptions(ctx, etcdlock.LockOptions{Key: "revoked", TTL: 5 * time.Second, AutoRefresh: true,
		Timeout: 10 * time.Second})
	require.NoError(t, err, "the lock of a holder without rights never freed")
	require.NoError(t, next.Release(ctx))
}

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
	got := goAcquire(t, root, etcdlock.DefaultPrefix, func() (etcdlock.Lock, error) {
		return second.Lock(ctx, "tls", 5*time.Second)
	})
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
