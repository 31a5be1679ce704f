package election_test

import (
	"errors"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/leasekit/leasekit/election"
	"github.com/leasekit/leasekit/embedtest"
)

// TestTLSAuthElection campaigns over TLS with client certificates
// required and etcd auth on: a candidate logged in by password leads,
// resigns, and a candidate known by its certificate alone takes over; a
// certificate of a user without rights is refused at once.
func TestTLSAuthElection(t *testing.T) {
	c := embedtest.New(t, embedtest.WithTLS())
	ctx := testCtx(t)
	root, err := c.EnableAuth(ctx)
	if err != nil {
		t.Fatal(err)
	}
	byPassword, err := c.AddUser(ctx, "app", embedtest.Grant{Prefix: "/leasekit/", Perm: clientv3.PermissionType(clientv3.PermReadWrite)})
	if err != nil {
		t.Fatal(err)
	}
	byCert, err := c.NewCertClient("app")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.AddUser(ctx, "nobody"); err != nil {
		t.Fatal(err)
	}
	nobody, err := c.NewCertClient("nobody")
	if err != nil {
		t.Fatal(err)
	}

	first, err := election.New(byPassword, "tls", election.WithTTL(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	second, err := election.New(byCert, "tls", election.WithTTL(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if err := first.Campaign(ctx, "password"); err != nil {
		t.Fatal(err)
	}
	won := make(chan error, 1)
	go func() { won <- second.Campaign(ctx, "cert") }()
	waitKeys(t, root, first.KeyPrefix(), 2)
	if err := first.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-won; err != nil {
		t.Fatal(err)
	}
	if l, err := first.Leader(ctx); err != nil || l.Value != "cert" || l.Rev != second.Rev() {
		t.Fatalf("Leader = %+v, %v; want cert's term %d", l, err, second.Rev())
	}
	if err := second.Resign(ctx); err != nil {
		t.Fatal(err)
	}

	refused, err := election.New(nobody, "tls")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := refused.Campaign(ctx, "nobody"); !errors.Is(err, rpctypes.ErrPermissionDenied) {
		t.Fatalf("Campaign without rights = %v, want ErrPermissionDenied", err)
	}
	if d := time.Since(start); d > electionAuthPrompt {
		t.Fatalf("refusal took %v", d)
	}
}
