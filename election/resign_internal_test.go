package election

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/leasekit/leasekit/embedtest"
	"github.com/leasekit/leasekit/internal/testkit"
)

// A Run that starts while Resign gives up a term that Campaign won does
// not take that term over: its duties start only on a term of its own.
// The hook puts Run's start between Resign's read of the term and the
// release.
func TestResignRacingRun(t *testing.T) {
	c := embedtest.New(t)
	ctx := testkit.Context(t)
	e, err := New(c.Client(), "resign-race")
	require.NoError(t, err)
	require.NoError(t, e.Campaign(ctx, "v"))
	resigned := e.Rev()

	rctx, stop := context.WithCancel(ctx)
	defer stop()
	starts := make(chan int64, 100)
	causes := make(chan error, 100)
	runDone := make(chan error, 1)
	first := make(chan int64, 1)
	testHookResign = func() {
		testHookResign = nil
		go func() {
			runDone <- e.Run(rctx, Callbacks{
				OnStartedLeading: func(ctx context.Context) {
					starts <- e.Rev()
					<-ctx.Done()
				},
				OnStoppedLeadingCause: func(cause error) { causes <- cause },
			})
		}()
		select {
		case s := <-starts:
			first <- s
		case <-ctx.Done():
			assert.Fail(t, "Run never started its duties")
		}
	}
	defer func() { testHookResign = nil }()
	require.NoError(t, e.Resign(ctx))
	if rev := <-first; rev == resigned {
		select {
		case cause := <-causes:
			assert.Failf(t, "Run took over the resigned term", "Run started its duties on term %d, which Resign was giving up; they ended with %v", rev, cause)
		case <-time.After(5 * time.Second):
			assert.Failf(t, "Run took over the resigned term", "Run started its duties on term %d, which Resign was giving up", rev)
		}
	}
	stop()
	require.NoError(t, <-runDone, "Run")
}
