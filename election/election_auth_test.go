package election_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/leasekit/leasekit/election"
	"github.com/leasekit/leasekit/embedtest"
)

// electionAuthPrompt is how long a call refused by etcd's auth may take:
// one round trip and a bounded cleanup. A retry loop takes longer.
const electionAuthPrompt = 3 * time.Second

// TestAuthElection runs elections with etcd's auth on: a user whose role is
// limited to the leasekit prefix can campaign, lead, write under guard and
// resign; a user without rights is refused with
// rpctypes.ErrPermissionDenied at once, and leaves nothing behind.
func TestAuthElection(t *testing.T) {
	c := embedtest.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	root, err := c.EnableAuth(ctx)
	if err != nil {
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
		e, err := election.New(app, "auth", election.WithTTL(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if err := e.Campaign(ctx, "app-1"); err != nil {
			t.Fatalf("Campaign: %v", err)
		}
		if l, err := e.Leader(ctx); err != nil || l.Value != "app-1" || l.Rev != e.Rev() {
			t.Errorf("Leader: %+v %v", l, err)
		}
		if err := e.Proclaim(ctx, "app-2"); err != nil {
			t.Errorf("Proclaim: %v", err)
		}
		if _, err := e.Txn(ctx, clientv3.OpPut("/leasekit/auth-data", "x")); err != nil {
			t.Errorf("guarded Txn: %v", err)
		}
		if err := e.Resign(ctx); err != nil {
			t.Errorf("Resign: %v", err)
		}
		if _, err := e.Leader(ctx); !errors.Is(err, election.ErrNoLeader) {
			t.Errorf("Leader after Resign: %v", err)
		}
	})

	t.Run("no rights", func(t *testing.T) {
		e, err := election.New(nobody, "auth", election.WithTTL(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		for name, call := range map[string]func(ctx context.Context) error{
			"Campaign": func(ctx context.Context) error { return e.Campaign(ctx, "nobody") },
			"Leader":   func(ctx context.Context) error { _, err := e.Leader(ctx); return err },
		} {
			cctx, cancel := context.WithTimeout(ctx, 10*electionAuthPrompt)
			start := time.Now()
			err := call(cctx)
			took := time.Since(start)
			cancel()
			if !errors.Is(err, rpctypes.ErrPermissionDenied) || took > electionAuthPrompt {
				t.Errorf("%s: want rpctypes.ErrPermissionDenied at once, got %v after %v", name, err, took)
			}
		}
		resp, err := root.Get(ctx, election.DefaultPrefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil || resp.Count != 0 {
			t.Errorf("keys left: %v %v", resp, err)
		}
		leases, err := root.Leases(ctx)
		if err != nil || len(leases.Leases) != 0 {
			t.Errorf("leases left: %v %v", leases, err)
		}
	})

	t.Run("Run without rights", func(t *testing.T) {
		e, err := election.New(nobody, "auth", election.WithTTL(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		rctx, cancel := context.WithTimeout(ctx, 10*electionAuthPrompt)
		defer cancel()
		start := time.Now()
		err = e.Run(rctx, election.Callbacks{OnStartedLeading: func(context.Context) {}})
		if !errors.Is(err, rpctypes.ErrPermissionDenied) || time.Since(start) > electionAuthPrompt {
			t.Errorf("Run: want rpctypes.ErrPermissionDenied at once, got %v after %v", err, time.Since(start))
		}
	})
}
