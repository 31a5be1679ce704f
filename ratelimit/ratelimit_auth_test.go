package ratelimit_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/leasekit/leasekit/embedtest"
	"github.com/leasekit/leasekit/ratelimit"
)

// rateAuthPrompt is how long a call refused by etcd's auth may take.
const rateAuthPrompt = 3 * time.Second

// TestAuthRateLimit runs limiters with etcd's auth on: a user whose role is
// limited to the leasekit prefix can allow, wait and set limits; a user
// without rights is refused with rpctypes.ErrPermissionDenied at once.
func TestAuthRateLimit(t *testing.T) {
	c := embedtest.New(t)
	ctx := testCtx(t)
	if _, err := c.EnableAuth(ctx); err != nil {
		t.Fatal(err)
	}
	app, err := c.AddUser(ctx, "app", embedtest.Grant{Prefix: "/leasekit/", Perm: clientv3.PermissionType(clientv3.PermReadWrite)})
	if err != nil {
		t.Fatal(err)
	}
	nobody, err := c.AddUser(ctx, "nobody")
	if err != nil {
		t.Fatal(err)
	}

	t.Run("prefix user", func(t *testing.T) {
		l, err := ratelimit.New(app, "auth", ratelimit.PerSecond(2))
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		for i := range 2 {
			if r, err := l.Allow(ctx, "k"); err != nil || r.Allowed != 1 {
				t.Fatalf("Allow %d: %+v %v", i, r, err)
			}
		}
		if r, err := l.Allow(ctx, "k"); err != nil || r.Allowed != 0 {
			t.Fatalf("Allow past the burst: %+v %v", r, err)
		}
		if err := l.Wait(ctx, "k"); err != nil {
			t.Fatalf("Wait: %v", err)
		}
		if err := l.SetLimit(ctx, ratelimit.PerSecond(5)); err != nil {
			t.Fatalf("SetLimit: %v", err)
		}
	})

	t.Run("no rights", func(t *testing.T) {
		l, err := ratelimit.New(nobody, "auth", ratelimit.PerSecond(2))
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		for name, call := range map[string]func(ctx context.Context) error{
			"Allow":    func(ctx context.Context) error { _, err := l.Allow(ctx, "k"); return err },
			"Wait":     func(ctx context.Context) error { return l.Wait(ctx, "k") },
			"SetLimit": func(ctx context.Context) error { return l.SetLimit(ctx, ratelimit.PerSecond(5)) },
		} {
			cctx, cancel := context.WithTimeout(ctx, 10*rateAuthPrompt)
			start := time.Now()
			err := call(cctx)
			took := time.Since(start)
			cancel()
			if !errors.Is(err, rpctypes.ErrPermissionDenied) || took > rateAuthPrompt {
				t.Errorf("%s: want rpctypes.ErrPermissionDenied at once, got %v after %v", name, err, took)
			}
		}
	})
}
