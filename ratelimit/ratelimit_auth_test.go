package ratelimit_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/leasekit/leasekit/embedtest"
	"github.com/leasekit/leasekit/internal/testkit"
	"github.com/leasekit/leasekit/ratelimit"
)

// TestAuthRateLimit runs limiters with etcd's auth on: a user whose role is
// limited to the leasekit prefix can allow, wait and set limits; a user
// without rights is refused with rpctypes.ErrPermissionDenied at once.
func TestAuthRateLimit(t *testing.T) {
	c := embedtest.New(t)
	ctx := testkit.Context(t)
	u := testkit.AuthUsers(t, c)
	app, nobody := u.App, u.Nobody

	t.Run("prefix user", func(t *testing.T) {
		l, err := ratelimit.New(app, "auth", ratelimit.PerSecond(2))
		require.NoError(t, err)
		defer l.Close()
		for i := range 2 {
			r, err := l.Allow(ctx, "k")
			require.NoError(t, err, "Allow %d", i)
			require.Equal(t, 1, r.Allowed, "Allow %d", i)
		}
		r, err := l.Allow(ctx, "k")
		require.NoError(t, err, "Allow past the burst")
		require.Zero(t, r.Allowed, "Allow past the burst")
		require.NoError(t, l.Wait(ctx, "k"), "Wait")
		require.NoError(t, l.SetLimit(ctx, ratelimit.PerSecond(5)), "SetLimit")
	})

	t.Run("no rights", func(t *testing.T) {
		l, err := ratelimit.New(nobody, "auth", ratelimit.PerSecond(2))
		require.NoError(t, err)
		defer l.Close()
		for name, call := range map[string]func(ctx context.Context) error{
			"Allow":    func(ctx context.Context) error { _, err := l.Allow(ctx, "k"); return err },
			"Wait":     func(ctx context.Context) error { return l.Wait(ctx, "k") },
			"SetLimit": func(ctx context.Context) error { return l.SetLimit(ctx, ratelimit.PerSecond(5)) },
		} {
			cctx, cancel := context.WithTimeout(ctx, 10*testkit.AuthPrompt)
			start := time.Now()
			err := call(cctx)
			took := time.Since(start)
			cancel()
			assert.ErrorIs(t, err, rpctypes.ErrPermissionDenied, name)
			assert.LessOrEqual(t, took, testkit.AuthPrompt, "%s must be refused at once", name)
		}
	})
}
