package election

import (
	"context"
	"testing"
	"time"

	"github.com/leasekit/leasekit/embedtest"
)

// A Run that starts while Resign gives up a term that Campaign won does
// not take that term over: its duties start only on a term of its own.
// The hook puts Run's start between Resign's read of the term and the
// release.
func TestResignRacingRun(t *testing.T) {
	c := embedtest.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	e, err := New(c.Client(), "resign-race")
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Campaign(ctx, "v"); err != nil {
		t.Fatal(err)
	}
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
			t.Error("Run never started its duties")
		}
	}
	defer func() { testHookResign = nil }()
	if err := e.Resign(ctx); err != nil {
		t.Fatalf("Resign: %v", err)
	}
	if rev := <-first; rev == resigned {
		select {
		case cause := <-causes:
			t.Errorf("Run started its duties on term %d, which Resign was giving up; they ended with %v", rev, cause)
		case <-time.After(5 * time.Second):
			t.Errorf("Run started its duties on term %d, which Resign was giving up", rev)
		}
	}
	stop()
	if err := <-runDone; err != nil {
		t.Fatalf("Run: %v", err)
	}
}
