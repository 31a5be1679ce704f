package embedtest

import (
	"context"
	"testing"
	"time"
)

// startTimeout bounds how long New waits for a cluster to start.
const startTimeout = 30 * time.Second

// New starts a cluster for a test or benchmark and closes it when the test
// ends. It fails the test if the cluster cannot start.
func New(tb testing.TB, opts ...Option) *Cluster {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	c, err := Start(ctx, opts...)
	if err != nil {
		tb.Fatalf("embedtest: %v", err)
	}
	tb.Cleanup(func() {
		if err := c.Close(); err != nil {
			tb.Errorf("embedtest: close: %v", err)
		}
	})
	return c
}
