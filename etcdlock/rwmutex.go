package etcdlock

import (
	"context"
	"time"

	"github.com/leasekit/leasekit/internal/queue"
)

// RWMutex is a reader/writer lock for one name, across every process that
// uses the name: many readers at a time, or one writer.
//
// It is fair. Readers and writers wait in one queue in the order they
// asked, and a reader queued behind a writer waits for that writer, so a
// stream of readers cannot starve a writer. A writer waits until everyone
// ahead of it is gone; a reader waits until no writer is ahead of it. A
// waiting reader watches only the writers ahead of it, from the current
// revision, so a writer's release admits every reader queued right behind
// it with one delete event.
//
// Holds are Locks, with the mutex's leases, tokens, Done and Guard. Every
// call takes a context and leaves no key behind when it fails, unlike
// etcd's experimental recipe.RWMutex.
//
// An RWMutex is safe for concurrent use and holds nothing by itself: each
// Lock or RLock returns its own hold. Make one with Locker.RWMutex.
type RWMutex struct {
	l      *Locker
	name   string
	reader plain // admitted with no writer ahead
	writer plain // admitted with nobody ahead
}

// RWMutex returns the reader/writer lock of the given name. It checks the
// name and touches nothing in etcd. RWMutexes live apart from mutexes and
// semaphores: the RWMutex "a" and the lock "a" are unrelated.
func (l *Locker) RWMutex(name string) (*RWMutex, error) {
	base, err := l.shapeBase(rwSegment, name)
	if err != nil {
		return nil, err
	}
	// Writers' keys are under w/ and readers' under r/, in one queue.
	writers := base + "w/"
	return &RWMutex{
		l: l, name: name,
		reader: plain{kind: "read lock", name: name, keys: base + "r/",
			q: queue.New(l.cli, base, queue.Rule{N: 1, Scope: writers})},
		writer: plain{kind: "write lock", name: name, keys: writers,
			q: queue.New(l.cli, base, queue.Rule{N: 1})},
	}, nil
}

// Name returns the lock's name.
func (m *RWMutex) Name() string { return m.name }

// Lock is shorthand for LockWithOptions(ctx, LockOptions{TTL: ttl}): it
// waits until the lock is free of readers and writers and returns it held
// for writing. Without a Refresh the hold expires after ttl.
func (m *RWMutex) Lock(ctx context.Context, ttl time.Duration) (Lock, error) {
	return m.LockWithOptions(ctx, LockOptions{TTL: ttl})
}

// LockWithOptions is Lock as opts describe; opts.Key must be empty or the
// lock's name.
func (m *RWMutex) LockWithOptions(ctx context.Context, opts LockOptions) (Lock, error) {
	return m.l.acquire(ctx, m.writer, opts, true)
}

// TryLock takes the lock for writing if nobody holds or waits for it, and
// returns (nil, false, nil) otherwise, writing nothing to etcd.
func (m *RWMutex) TryLock(ctx context.Context, ttl time.Duration) (Lock, bool, error) {
	return m.l.try(ctx, m.writer, LockOptions{TTL: ttl})
}

// RLock is shorthand for RLockWithOptions(ctx, LockOptions{TTL: ttl}): it
// waits until no writer holds the lock or is queued ahead, and returns it
// held for reading. Without a Refresh the hold expires after ttl.
func (m *RWMutex) RLock(ctx context.Context, ttl time.Duration) (Lock, error) {
	return m.RLockWithOptions(ctx, LockOptions{TTL: ttl})
}

// RLockWithOptions is RLock as opts describe; opts.Key must be empty or
// the lock's name.
func (m *RWMutex) RLockWithOptions(ctx context.Context, opts LockOptions) (Lock, error) {
	return m.l.acquire(ctx, m.reader, opts, true)
}

// TryRLock takes the lock for reading if no writer holds or waits for it,
// and returns (nil, false, nil) otherwise, writing nothing to etcd.
func (m *RWMutex) TryRLock(ctx context.Context, ttl time.Duration) (Lock, bool, error) {
	return m.l.try(ctx, m.reader, LockOptions{TTL: ttl})
}
