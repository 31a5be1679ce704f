package etcdlock

import (
	"context"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/leasekit/leasekit/internal/lease"
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
	l       *Locker
	name    string
	queue   string // prefix of every hold and waiter, ending in '/'
	writers string // writers' keys, under queue
	readers string // readers' keys, under queue
}

// RWMutex returns the reader/writer lock of the given name. It checks the
// name and touches nothing in etcd. RWMutexes live apart from mutexes and
// semaphores: the RWMutex "a" and the lock "a" are unrelated.
func (l *Locker) RWMutex(name string) (*RWMutex, error) {
	base, err := l.shapeBase(rwSegment, name)
	if err != nil {
		return nil, err
	}
	return &RWMutex{l: l, name: name, queue: base, writers: base + "w/", readers: base + "r/"}, nil
}

// Name returns the lock's name.
func (m *RWMutex) Name() string { return m.name }

// Lock waits until the lock is free of readers and writers and returns it
// held for writing. Without a Refresh the hold expires after ttl.
func (m *RWMutex) Lock(ctx context.Context, ttl time.Duration) (Lock, error) {
	return m.LockWithOptions(ctx, LockOptions{TTL: ttl})
}

// LockWithOptions is Lock as opts describe; opts.Key must be empty or the
// lock's name.
func (m *RWMutex) LockWithOptions(ctx context.Context, opts LockOptions) (Lock, error) {
	return m.l.acquireKind(ctx, m.writer(), opts, true)
}

// TryLock takes the lock for writing if nobody holds or waits for it, and
// returns (nil, false, nil) otherwise, writing nothing to etcd.
func (m *RWMutex) TryLock(ctx context.Context, ttl time.Duration) (Lock, bool, error) {
	return m.l.tryKind(ctx, m.writer(), ttl)
}

// RLock waits until no writer holds the lock or is queued ahead, and
// returns it held for reading. Without a Refresh the hold expires after
// ttl.
func (m *RWMutex) RLock(ctx context.Context, ttl time.Duration) (Lock, error) {
	return m.RLockWithOptions(ctx, LockOptions{TTL: ttl})
}

// RLockWithOptions is RLock as opts describe; opts.Key must be empty or
// the lock's name.
func (m *RWMutex) RLockWithOptions(ctx context.Context, opts LockOptions) (Lock, error) {
	return m.l.acquireKind(ctx, m.reader(), opts, true)
}

// TryRLock takes the lock for reading if no writer holds or waits for it,
// and returns (nil, false, nil) otherwise, writing nothing to etcd.
func (m *RWMutex) TryRLock(ctx context.Context, ttl time.Duration) (Lock, bool, error) {
	return m.l.tryKind(ctx, m.reader(), ttl)
}

func (m *RWMutex) writer() kind {
	return kind{
		what: "write lock", name: m.name, queue: m.queue,
		busy:  func(ctx context.Context) (bool, error) { return m.any(ctx, m.queue) },
		keyOf: func(id string) string { return m.writers + id },
		join: func(ctx context.Context, sp spec, ls *lease.Lease, key string) (
			*queue.Entry, func(context.Context) error, error) {
			e, err := queue.New(m.l.cli, m.queue, queue.Rule{N: 1}).Join(ctx, key, sp.value, ls)
			if err != nil || e.Admitted() {
				return e, nil, err
			}
			return e, e.Wait, nil
		},
	}
}

func (m *RWMutex) reader() kind {
	return kind{
		what: "read lock", name: m.name, queue: m.queue,
		busy:  func(ctx context.Context) (bool, error) { return m.any(ctx, m.writers) },
		keyOf: func(id string) string { return m.readers + id },
		join: func(ctx context.Context, sp spec, ls *lease.Lease, key string) (
			*queue.Entry, func(context.Context) error, error) {
			// A reader counts only the writers ahead; the join reads them,
			// so with none the read lock is held after one round trip.
			e, err := queue.New(m.l.cli, m.queue, queue.Rule{N: 1, Scope: m.writers}).Join(ctx, key, sp.value, ls)
			if err != nil || e.Admitted() {
				return e, nil, err
			}
			return e, e.Wait, nil
		},
	}
}

// any reports whether a key exists under prefix.
func (m *RWMutex) any(ctx context.Context, prefix string) (bool, error) {
	resp, err := m.l.cli.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return false, err
	}
	return resp.Count > 0, nil
}
