package etcdlock

import (
	"context"
	"errors"
	"fmt"
	"time"

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
	// keyOf names the key of the hold whose id (unique among the
	// Locker's keys in use) is id.
	keyOf func(id string) string
	// join adds key for the hold to the queue, attached to ls. It returns
	// the entry and, unless the hold is granted already, a function that
	// waits for it.
	join func(ctx context.Context, sp spec, ls *lease.Lease, key string) (*queue.Entry, func(context.Context) error, error)
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
