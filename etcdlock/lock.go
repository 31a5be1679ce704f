package etcdlock

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/leasekit/leasekit/internal/lease"
	"github.com/leasekit/leasekit/internal/queue"
)

// Lock is a held lock. Its methods are safe for concurrent use.
//
// Holding a lock only excludes other holders from writes that check it:
// a process can pause (GC, a slow disk, a partition) past its lease and
// still believe it holds the lock. Make writes to etcd conditional on
// Guard, and pass Token to any other system as a fencing token that it
// must check increases.
type Lock interface {
	// Key returns the lock's name.
	Key() string
	// TTL returns the lease TTL etcd granted, which can be more than asked:
	// etcd counts whole seconds and has a minimum.
	TTL() time.Duration
	// ExpiresAt returns the earliest time etcd could expire the lock
	// unless it is refreshed; AutoRefresh moves it on.
	ExpiresAt() time.Time
	// Refresh extends the lock by ttl from now, keeping its place and
	// token. A ttl other than the current TTL moves the hold to a lease of
	// that TTL. It returns ErrNotHeld if the lock is gone.
	Refresh(ctx context.Context, ttl time.Duration) error
	// Release gives the lock up and wakes the next waiter. It returns
	// ErrNotHeld if the lock was already released or lost; release a lost
	// lock all the same, to free what the Locker keeps for it.
	Release(ctx context.Context) error
	// IsValid asks etcd whether the lock is still held.
	IsValid(ctx context.Context) (bool, error)
	// Token returns the fencing token: the create revision of the hold's
	// key, which strictly increases across successive holders of a name.
	Token() int64
	// Done is closed when the lock is released or lost. A loss is noticed
	// before etcd can expire the lease (see docs/safety.md), so before
	// anyone else can acquire by expiry.
	Done() <-chan struct{}
	// Err returns nil while the lock is held, ErrNotHeld after Release and
	// an error wrapping ErrLockLost after a loss.
	Err() error
	// Guard returns a comparison that is true only while this hold is
	// current, for conditional writes: cli.Txn(ctx).If(lk.Guard()).Then(...).
	Guard() clientv3.Cmp
	// Metadata returns the fields stored with the hold.
	Metadata() map[string]string
}

type lock struct {
	locker   *Locker
	spec     spec
	entry    *queue.Entry
	slot     int
	acquired time.Time

	mu       sync.Mutex // serialises Refresh and Release
	lease    *lease.Lease
	own      bool        // the lease is this hold's alone
	released atomic.Bool // set before the entry ends by Release
}

func (lk *lock) Key() string                 { return lk.spec.name }
func (lk *lock) Token() int64                { return lk.entry.Rev() }
func (lk *lock) Done() <-chan struct{}       { return lk.entry.Done() }
func (lk *lock) Guard() clientv3.Cmp         { return lk.entry.Guard() }
func (lk *lock) Metadata() map[string]string { return maps.Clone(lk.spec.meta) }

func (lk *lock) currentLease() *lease.Lease {
	lk.mu.Lock()
	defer lk.mu.Unlock()
	return lk.lease
}

func (lk *lock) TTL() time.Duration   { return lk.currentLease().TTL() }
func (lk *lock) ExpiresAt() time.Time { return lk.currentLease().ExpiresAt() }

func (lk *lock) Err() error {
	lk.mu.Lock()
	defer lk.mu.Unlock()
	return lk.errLocked()
}

// errLocked is Err for callers holding lk.mu.
func (lk *lock) errLocked() error {
	select {
	case <-lk.entry.Done():
	default:
		return nil
	}
	if lk.released.Load() {
		return ErrNotHeld
	}
	return fmt.Errorf("%w: %w", ErrLockLost, leaseOrKey(lk.lease))
}

// onEnd reports a loss to the log and metrics. The queue entry calls it
// when it ends; Done itself is the entry's, closed the moment its key or
// lease goes.
func (lk *lock) onEnd(err error) {
	if lk.released.Load() {
		return
	}
	lk.locker.lg.Warn("lock lost", zap.String("lock", lk.spec.name), zap.Int64("token", lk.Token()),
		zap.Error(err))
	lk.locker.metrics.Lost(lk.spec.name)
	// The hold stays tracked until Release or Locker.Close, which waits for
	// the lease's last revoke.
}

// freeSlot returns the hold's slot once its key is deleted or given up on.
func (lk *lock) freeSlot() { lk.locker.freeSlot(lk.spec.queue, lk.slot) }

func (lk *lock) Release(ctx context.Context) error {
	lk.mu.Lock()
	defer lk.mu.Unlock()
	if lk.released.Load() {
		return fmt.Errorf("%w: already released", ErrNotHeld)
	}
	lost := lk.errLocked()
	lk.released.Store(true)
	lk.locker.untrack(lk)
	if err := lk.locker.clientErr(); err != nil {
		// Nothing can be deleted: the lease's expiry frees the lock.
		lk.entry.Close()
		if lk.own {
			lk.lease.Close()
		}
		lk.freeSlot()
		return err
	}
	var err error
	if lk.own {
		// The lease is this hold's alone: revoking it deletes the key.
		lk.entry.Close()
		err = lk.lease.Revoke(ctx)
		if errors.Is(err, lease.ErrNotFound) || errors.Is(err, lease.ErrExpired) {
			err = fmt.Errorf("%w: %w", ErrNotHeld, err)
		}
	} else {
		err = lk.entry.Leave(ctx)
		switch {
		case errors.Is(err, queue.ErrGone):
			err = fmt.Errorf("%w: key gone", ErrNotHeld)
		case err != nil:
			// The shared lease's keepalive would keep the key, and the
			// lock taken, for good: the Locker deletes it when it can.
			lk.locker.dispose(orphan{key: lk.entry.Key(), rev: lk.Token(), queue: lk.spec.queue, slot: lk.slot})
			return err
		}
	}
	lk.freeSlot()
	if lost != nil && err == nil {
		err = fmt.Errorf("%w: %w", ErrNotHeld, lost)
	}
	if err == nil {
		lk.locker.metrics.Released(lk.spec.name, time.Since(lk.acquired))
	}
	return err
}

func (lk *lock) IsValid(ctx context.Context) (bool, error) {
	if lk.Err() != nil {
		return false, nil
	}
	if err := lk.locker.clientErr(); err != nil {
		return false, err
	}
	resp, err := lk.locker.cli.Txn(ctx).If(lk.Guard()).Commit()
	if err != nil {
		return false, err
	}
	return resp.Succeeded && lk.Err() == nil, nil
}

func (lk *lock) Refresh(ctx context.Context, ttl time.Duration) error {
	if ttl <= 0 || ttl > MaxTTL {
		return fmt.Errorf("%w: refresh TTL %v", ErrInvalidTTL, ttl)
	}
	lk.mu.Lock()
	defer lk.mu.Unlock()
	if lk.released.Load() {
		return fmt.Errorf("%w: released", ErrNotHeld)
	}
	if err := lk.errLocked(); err != nil {
		return fmt.Errorf("%w: %w", ErrNotHeld, err)
	}
	if err := lk.locker.clientErr(); err != nil {
		return err
	}
	if lease.Seconds(ttl) == int64(lk.lease.TTL()/time.Second) {
		err := lk.lease.KeepAliveOnce(ctx)
		if errors.Is(err, lease.ErrNotFound) {
			return fmt.Errorf("%w: %w", ErrNotHeld, err)
		}
		return err
	}
	return lk.moveLease(ctx, ttl)
}

// moveLease puts the hold's key on a lease of another TTL. The key keeps
// its create revision, so the hold keeps its token and place.
func (lk *lock) moveLease(ctx context.Context, ttl time.Duration) error {
	sp := lk.spec
	sp.ttl = ttl
	next, own, err := lk.locker.leaseFor(ctx, sp)
	if err != nil {
		return err
	}
	key := lk.entry.Key()
	resp, err := lk.locker.cli.Txn(ctx).If(lk.Guard()).
		Then(clientv3.OpPut(key, "", clientv3.WithIgnoreValue(), clientv3.WithLease(next.ID()))).
		Commit()
	if err != nil || !resp.Succeeded {
		if own {
			revokeDetached(next)
		}
		if err != nil {
			return err
		}
		return fmt.Errorf("%w: key gone", ErrNotHeld)
	}
	old, wasOwn := lk.lease, lk.own
	lk.entry.Rebind(next.Context())
	lk.lease, lk.own = next, own
	if wasOwn {
		revokeDetached(old)
	}
	return nil
}
