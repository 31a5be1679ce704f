package election

import (
	"context"
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/leasekit/leasekit/internal/etcderr"
)

// Callbacks are what Run calls as leadership comes and goes. Run calls
// OnStartedLeading and then OnStoppedLeading (or OnStoppedLeadingCause)
// once per term, one term at a time; OnNewLeader from another goroutine,
// in order.
type Callbacks struct {
	// OnStartedLeading runs the leader's duties; it is required. Its ctx
	// is cancelled the moment leadership is lost: when the lease's
	// client-side deadline passes (before etcd can expire the lease, so
	// before any other candidate can lead), when the candidate's key is
	// deleted, when Resign is called, or when Run's ctx ends;
	// context.Cause(ctx) then says which (see OnStoppedLeadingCause). The
	// ctx has the values and deadline of Run's ctx. It must then return
	// promptly: Run hands leadership over only after it returns, so that
	// the duties of two leaders never run at once. When it returns by
	// itself, Run resigns and campaigns again, which lets the other
	// candidates take a turn first.
	OnStartedLeading func(ctx context.Context)
	// OnStoppedLeading is called after each term, as soon as
	// OnStartedLeading has returned and before Run gives the term up, so
	// that it runs before any other candidate can lead. After a loss to
	// the lease's deadline etcd has not expired the lease yet, but will
	// soon: the margin is a tenth of the TTL (50ms to 1s), so keep it
	// short. A key deleted or a lease revoked from outside ends the term
	// in etcd at once, and the next candidate may lead first. It is
	// optional and never called without a term before it.
	OnStoppedLeading func()
	// OnStoppedLeadingCause is OnStoppedLeading with the reason the term
	// ended: an error wrapping ErrLost (the lease's deadline passed, the
	// lease was revoked or the key deleted), ErrResigned, ErrStopped or
	// ErrDutiesReturned. It is the same error as context.Cause of the
	// duties' ctx. Set OnStoppedLeading or OnStoppedLeadingCause, not
	// both.
	OnStoppedLeadingCause func(cause error)
	// OnNewLeader is called with every leader Observe reports, this
	// candidate included, and with the zero Leader when nobody leads. It
	// is optional. Run waits for it to return before returning itself.
	OnNewLeader func(Leader)
}

// Retry delays for Run's campaigns after an error such as an unreachable
// etcd: doubling from the first to the last.
const (
	retryFirst = 50 * time.Millisecond
	retryLast  = 2 * time.Second
)

// Run campaigns with the value set by WithValue and, each time it wins,
// runs cb.OnStartedLeading with a context that ends when leadership does.
// When the duties return (or their context ends) it calls
// cb.OnStoppedLeading, then resigns, which hands leadership to the next
// candidate without waiting for a TTL, and campaigns again. Transient
// errors from etcd (no leader, timeouts, an unreachable etcd, a lost
// lease) are logged and the campaign retried, with a delay doubling from
// 50ms to 2s.
//
// Run returns when ctx ends, after handing leadership over, with nil or
// the error of that last resignation. It returns at once, with an error
// wrapping etcd's, when etcd definitely refuses a campaign: permission
// denied (rpctypes.ErrPermissionDenied), failed authentication
// (rpctypes.ErrUserEmpty, ErrAuthFailed, ErrInvalidAuthToken and the like,
// still refused after clientv3 refreshed its token) or an invalid
// argument. Check them with errors.Is. It returns an error wrapping
// ErrInvalidOption if cb.OnStartedLeading is nil or both
// OnStoppedLeading and OnStoppedLeadingCause are set, and ErrBusy if a
// Campaign or Run of this Election is in progress. A term already won by
// Campaign is taken over, unless Resign is giving it up.
func (e *Election) Run(ctx context.Context, cb Callbacks) error {
	if cb.OnStartedLeading == nil {
		return fmt.Errorf("%w: Callbacks.OnStartedLeading is nil", ErrInvalidOption)
	}
	if cb.OnStoppedLeading != nil && cb.OnStoppedLeadingCause != nil {
		return fmt.Errorf("%w: set Callbacks.OnStoppedLeading or OnStoppedLeadingCause, not both", ErrInvalidOption)
	}
	t, err := e.begin(true)
	if err != nil {
		return err
	}
	defer e.finish()

	if cb.OnNewLeader != nil {
		octx, cancel := context.WithCancel(ctx)
		var wg sync.WaitGroup
		defer func() {
			cancel()
			wg.Wait()
		}()
		ch := e.Observe(octx)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for l := range ch {
				cb.OnNewLeader(l)
			}
		}()
	}

	b := etcderr.Backoff{Min: retryFirst, Max: retryLast}
	for {
		if t == nil {
			t, err = e.win(ctx, e.value, true)
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if etcderr.Refused(err) {
				e.lg.Error("campaign refused; giving up", zap.Error(err))
				return err // wrapped by win: "election: campaign ...: ..."
			}
			e.lg.Warn("campaign failed; retrying", zap.Duration("in", b.Delay()), zap.Error(err))
			if b.Wait(ctx) != nil {
				return nil
			}
			continue
		}
		b.Reset()
		err = e.lead(ctx, t, cb)
		t = nil
		if ctx.Err() != nil {
			return err
		}
	}
}

// lead runs the duties of term t until they return or leadership ends,
// tells cb why it ended, then gives the term up.
func (e *Election) lead(ctx context.Context, t *term, cb Callbacks) error {
	dctx, cancel := dutiesContext(ctx)
	defer cancel(nil)
	done := make(chan struct{})
	go func() {
		defer close(done)
		cb.OnStartedLeading(dctx)
	}()
	var cause error
	select {
	case <-done:
		cause = ErrDutiesReturned
	case <-ctx.Done():
		cause = stopped(ctx)
	case <-t.stepDown:
		cause = ErrResigned
	case <-t.done():
		cause = t.err()
		e.lg.Warn("leadership lost; duties cancelled", zap.Int64("term", t.entry.Rev()), zap.Error(cause))
	}
	// The first cause wins: Run's ctx may have ended the duties already.
	cancel(cause)
	<-done
	cause = context.Cause(dctx)
	// Told before the term is given up: while this candidate still holds
	// its key nobody else can lead, and after a loss the release can wait
	// out a whole etcderr.CleanupTimeout on a cut network, longer than etcd takes
	// to expire the lease.
	switch {
	case cb.OnStoppedLeading != nil:
		cb.OnStoppedLeading()
	case cb.OnStoppedLeadingCause != nil:
		cb.OnStoppedLeadingCause(cause)
	}
	// ctx may be over, but the handover still deserves a bounded try.
	rctx, rcancel := etcderr.Cleanup(ctx)
	defer rcancel()
	return e.release(rctx, t)
}

// dutiesContext returns the duties' context: ctx's values and deadline,
// ended by cancel with a cause, or by ctx with a cause wrapping ErrStopped
// (a child of ctx would take ctx's cause instead).
func dutiesContext(ctx context.Context) (context.Context, context.CancelCauseFunc) {
	dctx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	stopTimer := func() {}
	if d, ok := ctx.Deadline(); ok {
		dctx, stopTimer = context.WithDeadlineCause(dctx, d, fmt.Errorf("%w: %w", ErrStopped, context.DeadlineExceeded))
	}
	stopAfter := context.AfterFunc(ctx, func() { cancel(stopped(ctx)) })
	return dctx, func(cause error) {
		cancel(cause)
		stopAfter()
		stopTimer()
	}
}

// stopped is the cause of a term that ended with Run's ctx.
func stopped(ctx context.Context) error {
	return fmt.Errorf("%w: %w", ErrStopped, context.Cause(ctx))
}
