package election_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/leasekit/leasekit/election"
	"github.com/leasekit/leasekit/embedtest"
	"github.com/leasekit/leasekit/internal/testkit"
)

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
