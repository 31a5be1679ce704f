// Package etcderr says what a failed etcd call means and what to do next:
// whether trying again may help (Transient), cannot help (Refused), or
// whether a write may have happened all the same (Ambiguous); how long to
// pause before the next attempt (Backoff); and how long a call made after
// its caller gave up may take (Cleanup).
//
// Every retry loop in leasekit asks these questions the same way:
//
//	b := etcderr.Backoff{Min: 50 * time.Millisecond, Max: 2 * time.Second}
//	for {
//		err := call(ctx)
//		if err == nil || etcderr.Refused(err) {
//			return err
//		}
//		if err := b.Wait(ctx); err != nil {
//			return err
//		}
//	}
package etcderr

import (
	"context"
	"errors"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ErrWatch marks a watch that did not start or broke: transient, as a
// new watch may start where this one could not.
var ErrWatch = errors.New("etcd watch failed")

// Ambiguous reports whether a write that failed with err may have been
// applied all the same: the call timed out, was cancelled or lost its
// connection. An error etcd answered with (permission denied, lease not
// found, ...) means it refused the write.
func Ambiguous(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	switch code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled, codes.Unknown, codes.Internal:
		return true
	}
	return false
}

// Transient reports whether an error of etcd's may pass if the call is
// tried again: no leader, a timeout inside etcd, a watch that broke
// (ErrWatch), a lost connection, a cancelled or timed-out call.
func Transient(err error) bool {
	return errors.Is(err, ErrWatch) || Ambiguous(err) ||
		errors.Is(err, rpctypes.ErrNoLeader) || errors.Is(err, rpctypes.ErrTimeout) ||
		errors.Is(err, rpctypes.ErrTimeoutDueToLeaderFail) || errors.Is(err, rpctypes.ErrTimeoutDueToConnectionLost)
}

// Refused reports whether etcd definitely refused a call, so that trying
// it again cannot help: permission denied, failed authentication (an
// invalid token or user that clientv3's token refresh did not cure), or
// an invalid argument. A transient error is never a refusal, nor is
// rpctypes.ErrAuthOldRevision, which clientv3 cures by refreshing its
// token.
func Refused(err error) bool {
	if err == nil || Transient(err) || errors.Is(err, rpctypes.ErrAuthOldRevision) {
		return false
	}
	switch code(err) {
	case codes.PermissionDenied, codes.Unauthenticated, codes.InvalidArgument:
		return true
	}
	return false
}

// code is err's gRPC code, from etcd's typed error if it is one.
func code(err error) codes.Code {
	var ee rpctypes.EtcdError
	if errors.As(err, &ee) {
		return ee.Code()
	}
	return status.Code(err)
}

// Backoff is the pause between the attempts of a retry loop: Min at
// first, doubling after each pause up to Max. Reset it after an attempt
// that got somewhere. The zero value pauses not at all; a Backoff is not
// safe for concurrent use.
type Backoff struct {
	Min, Max time.Duration
	next     time.Duration // 0 until the first pause
}

// Delay returns how long the next Wait pauses, for a log line.
func (b *Backoff) Delay() time.Duration {
	if b.next == 0 {
		return b.Min
	}
	return b.next
}

// Wait pauses for Delay, then doubles it, up to Max. It returns ctx's
// error if ctx ends first.
func (b *Backoff) Wait(ctx context.Context) error {
	d := b.Delay()
	b.next = min(2*d, b.Max)
	return Sleep(ctx, d)
}

// Sleep pauses for d, or until ctx ends, and then returns ctx's error;
// with d ≤ 0 it returns ctx's error at once. It is a schedule's pause (a
// backoff, a fault's duration, a benchmark's hold), never a wait for a
// condition.
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Reset makes the next pause Min again.
func (b *Backoff) Reset() { b.next = 0 }

// CleanupTimeout bounds every call made after its caller's context may
// have ended (deleting a key that will not be a hold, revoking a lease,
// settling a write of unknown outcome), so that no cleanup can hang on an
// unreachable etcd.
const CleanupTimeout = 2 * time.Second

// Cleanup returns the context for such a call: ctx's values without its
// cancellation, ending CleanupTimeout from now.
func Cleanup(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), CleanupTimeout)
}

// Reason is the reason the metrics of a failed acquisition or campaign
// give: "timeout" or "canceled" when its context ended, "lost" when err
// wraps lost (the package's loss error), else "error".
func Reason(err, lost error) string {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, lost):
		return "lost"
	}
	return "error"
}
