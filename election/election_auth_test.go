package election_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/leasekit/leasekit/election"
	"github.com/leasekit/leasekit/embedtest"
	"github.com/leasekit/leasekit/internal/testkit"
)

// TestAuthElection runs elections with etcd's auth on: a user whose role is
// limited to the leasekit prefix can campaign, lead, write under guard and
// resign; a user without rights is refused with
// rpctypes.ErrPermissionDenied at once, and leaves nothing behind.
func TestAuthElection(t *testing.T) {
	c := embedtest.New(t)
	ctx := testkit.Context(t)
	u := testkit.AuthUsers(t, c)
	root, app, nobody := u.Root, u.App, u.Nobody

	t.Run("prefix user", func(t *testing.T) {
		e, err := election.New(app, "auth", election.WithTTL(5*time.Second))
		require.NoError(t, err)
		require.NoError(t, e.Campaign(ctx, "app-1"))
		l, err := e.Leader(ctx)
		assert.NoError(t, err)
		assert.Equal(t, election.Leader{Value: "app-1", Rev: e.Rev()}, l)
		assert.NoError(t, e.Proclaim(ctx, "app-2"))
		_, err = e.Txn(ctx, clientv3.OpPut("/leasekit/auth-data", "x"))
		assert.NoError(t, err, "guarded Txn")
		assert.NoError(t, e.Resign(ctx))
		_, err = e.Leader(ctx)
		assert.ErrorIs(t, err, election.ErrNoLeader, "Leader after Resign")
	})

	t.Run("no rights", func(t *testing.T) {
		e, err := election.New(nobody, "auth", election.WithTTL(5*time.Second))
		require.NoError(t, err)
		for name, call := range map[string]func(ctx context.Context) error{
			"Campaign": func(ctx context.Context) error { return e.Campaign(ctx, "nobody") },
			"Leader":   func(ctx context.Context) error { _, err := e.Leader(ctx); return err },
		} {
			cctx, cancel := context.WithTimeout(ctx, 10*testkit.AuthPrompt)
			start := time.Now()
			err := call(cctx)
			took := time.Since(start)
			cancel()
			assert.ErrorIs(t, err, rpctypes.ErrPermissionDenied, name)
			assert.LessOrEqual(t, took, testkit.AuthPrompt, "%s must be refused at once", name)
		}
		resp, err := root.Get(ctx, election.DefaultPrefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
		assert.NoError(t, err)
		assert.Zero(t, resp.Count, "keys left")
		leases, err := root.Leases(ctx)
		assert.NoError(t, err)
		assert.Empty(t, leases.Leases, "leases left")
	})

	t.Run("Run without rights", func(t *testing.T) {
		e, err := election.New(nobody, "auth", election.WithTTL(5*time.Second))
		require.NoError(t, err)
		rctx, cancel := context.WithTimeout(ctx, 10*testkit.AuthPrompt)
		defer cancel()
		start := time.Now()
		err = e.Run(rctx, election.Callbacks{OnStartedLeading: func(context.Context) {}})
		assert.ErrorIs(t, err, rpctypes.ErrPermissionDenied, "Run")
		assert.LessOrEqual(t, time.Since(start), testkit.AuthPrompt, "Run must be refused at once")
	})
}

// TestTLSAuthElection campaigns over TLS with client certificates
// required and etcd auth on: a candidate logged in by password leads,
// resigns, and a candidate known by its certificate alone takes over; a
// certificate of a user without rights is refused at once.
func TestTLSAuthElection(t *testing.T) {
	c := embedtest.New(t, embedtest.WithTLS())
	ctx := testkit.Context(t)
	u := testkit.AuthUsers(t, c)
	root, byPassword, byCert, nobody := u.Root, u.App, u.AppCert, u.NobodyCert

	first, err := election.New(byPassword, "tls", election.WithTTL(5*time.Second))
	require.NoError(t, err)
	second, err := election.New(byCert, "tls", election.WithTTL(5*time.Second))
	require.NoError(t, err)
	require.NoError(t, first.Campaign(ctx, "password"))
	won := make(chan error, 1)
	go func() { won <- second.Campaign(ctx, "cert") }()
	testkit.AwaitKeysAtLeast(t, root, first.KeyPrefix(), 2)
	require.NoError(t, first.Resign(ctx))
	require.NoError(t, <-won)
	l, err := first.Leader(ctx)
	require.NoError(t, err)
	require.Equal(t, election.Leader{Value: "cert", Rev: second.Rev()}, l, "cert leads")
	require.NoError(t, second.Resign(ctx))

	refused, err := election.New(nobody, "tls")
	require.NoError(t, err)
	start := time.Now()
	require.ErrorIs(t, refused.Campaign(ctx, "nobody"), rpctypes.ErrPermissionDenied, "Campaign without rights")
	require.LessOrEqual(t, time.Since(start), testkit.AuthPrompt, "the refusal is at once")
}
