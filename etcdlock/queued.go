package etcdlock

import (
	"context"
	"errors"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/leasekit/leasekit/internal/keys"
	"github.com/leasekit/leasekit/internal/lease"
	"github.com/leasekit/leasekit/internal/queue"
)

// The lock shapes beside the mutex (Semaphore, and RWMutex's readers and
// writers) share the mutex's machinery: validation, leases, the queue,
// cleanup of waiter keys, metrics and the *lock handle. Only how a hold
// joins its queue and what it waits for differ; a kind says that.

// Their queues live beside the mutexes' under the Locker's prefix, behind a
// segment that starts with '%' and is not a valid escape, so no encoded
// lock name can equal it: the mutex "%sem" is encoded as "%25sem".
const (
	semSegment = "%sem/"
	rwSegment  = "%rw/"
)

// shapeBase returns where the queue of the named hold of one shape lives.
func (l *Locker) shapeBase(segment, name string) (string, error) {
	enc, err := keys.Encode(name)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrInvalidKey, err)
	}
	return l.prefix + segment + enc + "/", nil
}

// kind is one shape of hold on one name.
type kind struct {
	what  string // "semaphore", "read lock", ... for errors
	name  string
	queue string // the queue's prefix
	// busy reports, by reading only, whether a hold now would have to wait.
	busy func(ctx context.Context) (bool, error)
	// join adds a key for the hold to the queue, attached to ls. id is
	// unique among this kind's keys in use. It returns the entry and, unless the hold is
	// granted already, a function that waits for it.
	join func(ctx, watchCtx context.Context, sp spec, ls *lease.Lease, id string) (*queue.Entry, func(context.Context) error, error)
}

// kindOptions checks that opts, given to a method of a named shape, name
// that shape or nothing.
func kindOptions(opts LockOptions, name string) (LockOptions, error) {
	if opts.Key != "" && opts.Key != name {
		return opts, fmt.Errorf("%w: options name %q, not %q", ErrInvalidKey, opts.Key, name)
	}
	opts.Key = name
	return opts, nil
}

// acquireKind is Locker.acquire for a kind: the same bounds on the wait,
// the same end on Close, the same metrics and errors.
func (l *Locker) acquireKind(ctx context.Context, k kind, opts LockOptions, wait bool) (Lock, error) {
	opts, err := kindOptions(opts, k.name)
	if err != nil {
		return nil, err
	}
	sp, err := l.validate(opts)
	if err != nil {
		return nil, err
	}
	sp.queue = k.queue
	if err := l.enter(); err != nil {
		return nil, err
	}
	defer l.wg.Done()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("etcdlock: %s %q: %w", k.what, sp.name, err)
	}
	if opts.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, opts.Timeout)
		defer cancel()
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stopClose := context.AfterFunc(l.ctx, func() { cancel(ErrClosed) })
	defer stopClose()

	start := time.Now()
	lk, err := l.takeKind(ctx, k, sp, wait)
	switch {
	case err == nil:
		l.metrics.Acquired(sp.name, time.Since(start))
		return lk, nil
	case errors.Is(err, errBusy):
		return nil, err
	case errors.Is(context.Cause(ctx), ErrClosed):
		err = ErrClosed
	}
	reason := "error"
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		reason = "timeout"
	case errors.Is(err, context.Canceled):
		reason = "canceled"
	case errors.Is(err, ErrLockLost):
		reason = "lost"
	}
	l.metrics.Failed(sp.name, reason)
	return nil, fmt.Errorf("etcdlock: %s %q: %w", k.what, sp.name, err)
}

// takeKind is Locker.take for a kind.
func (l *Locker) takeKind(ctx context.Context, k kind, sp spec, wait bool) (*lock, error) {
	if !wait {
		// Look before writing anything: a busy name costs one read.
		busy, err := k.busy(ctx)
		if err != nil {
			return nil, err
		}
		if busy {
			return nil, errBusy
		}
	}
	ls, own, err := l.leaseFor(ctx, sp)
	if err != nil {
		return nil, err
	}
	watchCtx := clientv3.WithRequireLeader(l.ctx)
	// Keys are reused per Locker slot, as the mutex's are.
	slot := l.takeSlot(sp.queue)
	e, waitFn, err := k.join(ctx, watchCtx, sp, ls, fmt.Sprintf("%s-%d", l.id, slot))
	if err != nil {
		l.freeSlot(sp.queue, slot)
	}
	if err == nil && waitFn != nil {
		if !wait {
			err = errBusy
		} else {
			l.metrics.Waiting(sp.name, 1)
			err = waitFn(ctx)
			l.metrics.Waiting(sp.name, -1)
			if errors.Is(err, queue.ErrGone) {
				err = fmt.Errorf("%w: %w while waiting", ErrLockLost, leaseOrKey(ls))
			}
		}
		if err != nil {
			l.cleanup(e)
			l.freeSlot(sp.queue, slot)
		}
	}
	if err != nil {
		if own {
			revokeDetached(ls)
		}
		return nil, err
	}
	lk := &lock{locker: l, spec: sp, entry: e, lease: ls, own: own, slot: slot, acquired: time.Now()}
	if !l.track(lk) {
		lk.Release(context.Background())
		return nil, ErrClosed
	}
	lk.entry.AfterEnd(lk.onEnd)
	return lk, nil
}

// tryKind is TryLock's answer for a kind.
func (l *Locker) tryKind(ctx context.Context, k kind, ttl time.Duration) (Lock, bool, error) {
	lk, err := l.acquireKind(ctx, k, LockOptions{TTL: ttl}, false)
	if errors.Is(err, errBusy) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	return lk, true, nil
}
