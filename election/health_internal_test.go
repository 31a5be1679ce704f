package election

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/leasekit/leasekit/embedtest"
)

// Renewal is overdue half a TTL after the last renewal was sent; time is
// passed in, so nothing waits.
func TestHealthyAt(t *testing.T) {
	c := embedtest.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	e, err := New(c.Client(), "healthy-at", WithTTL(3*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Campaign(ctx, "v"); err != nil {
		t.Fatal(err)
	}
	defer e.Resign(context.Background())
	now := time.Now()
	if err := e.healthyAt(now); err != nil {
		t.Fatalf("just elected: %v", err)
	}
	// Renewals only move the deadline on, so a time a whole TTL from now
	// is overdue whatever happened meanwhile.
	if err := e.healthyAt(now.Add(e.TTL())); !errors.Is(err, ErrRenewalOverdue) {
		t.Fatalf("a TTL later: got %v, want ErrRenewalOverdue", err)
	}
	if err := e.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	if err := e.healthyAt(now.Add(e.TTL())); err != nil {
		t.Fatalf("not leading: %v", err)
	}
}
