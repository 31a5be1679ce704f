package election

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/leasekit/leasekit/embedtest"
	"github.com/leasekit/leasekit/internal/testkit"
)

// Renewal is overdue half a TTL after the last renewal was sent; time is
// passed in, so nothing waits.
func TestHealthyAt(t *testing.T) {
	c := embedtest.New(t)
	ctx := testkit.Context(t)
	e, err := New(c.Client(), "healthy-at", WithTTL(3*time.Second))
	require.NoError(t, err)
	require.NoError(t, e.Campaign(ctx, "v"))
	defer e.Resign(context.Background())
	now := time.Now()
	require.NoError(t, e.healthyAt(now), "just elected")
	// Renewals only move the deadline on, so a time a whole TTL from now
	// is overdue whatever happened meanwhile.
	require.ErrorIs(t, e.healthyAt(now.Add(e.TTL())), ErrRenewalOverdue, "a TTL later")
	require.NoError(t, e.Resign(ctx))
	require.NoError(t, e.healthyAt(now.Add(e.TTL())), "not leading")
}
