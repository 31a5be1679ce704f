package etcdlock

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/leasekit/leasekit/internal/errs"
	"github.com/leasekit/leasekit/internal/etcderr"
)

// Manager runs code under locks and tracks locks it acquired by name: the
// lock manager of the "Use Distributed Lock Pattern" decision record (see
// DistributedLock), with WithLock, TryWithLock, AcquireLock, ReleaseLock
// and ReleaseAll. It is safe for concurrent use.
type Manager struct {
	dl DistributedLock

	mu    sync.Mutex
	locks map[string]Lock
}

// NewManager returns a Manager taking locks from dl, usually a *Locker.
func NewManager(dl DistributedLock) *Manager {
	return &Manager{dl: dl, locks: map[string]Lock{}}
}

// tryLocker is the part of *Locker that TryWithLock uses when it can, so
// that the lock is kept alive while fn runs.
type tryLocker interface {
	TryLockWithOptions(ctx context.Context, opts LockOptions) (Lock, bool, error)
}

// WithLock waits for the lock key, runs fn while holding it and releases
// it. The lock is kept alive with AutoRefresh, ttl being how long it
// outlives a holder that stops refreshing. fn's context is cancelled,
// with a cause wrapping ErrLockLost, the moment the lock is lost; if fn
// then returns nil, WithLock returns an error wrapping ErrLockLost, since
// fn did not run wholly under the lock.
//
// fn's context carries the hold: FromContext returns it, so that fn can
// make its etcd writes conditional on Lock.Guard and pass Lock.Token to
// other systems. The Example shows a guarded write.
func (m *Manager) WithLock(ctx context.Context, key string, ttl time.Duration, fn func(ctx context.Context) error) error {
	if err := m.check(fn); err != nil {
		return err
	}
	lk, err := m.dl.LockWithOptions(ctx, LockOptions{Key: key, TTL: ttl, AutoRefresh: true})
	if err != nil {
		return err
	}
	return runHolding(ctx, lk, fn)
}

// TryWithLock runs fn under the lock key if it is free, as WithLock does
// (FromContext included), and reports whether it ran. When the lock is
// taken it returns (false, nil) at once.
func (m *Manager) TryWithLock(ctx context.Context, key string, ttl time.Duration, fn func(ctx context.Context) error) (bool, error) {
	if err := m.check(fn); err != nil {
		return false, err
	}
	var lk Lock
	var ok bool
	var err error
	if tl, can := m.dl.(tryLocker); can {
		lk, ok, err = tl.TryLockWithOptions(ctx, LockOptions{Key: key, TTL: ttl, AutoRefresh: true})
	} else {
		lk, ok, err = m.dl.TryLock(ctx, key, ttl)
	}
	if err != nil || !ok {
		return false, err
	}
	return true, runHolding(ctx, lk, fn)
}

// check rejects a Manager without a DistributedLock and a nil fn, before
// anything is acquired.
func (m *Manager) check(fn func(ctx context.Context) error) error {
	switch {
	case m.dl == nil:
		return fmt.Errorf("%w: Manager of a nil DistributedLock", ErrInvalidOption)
	case fn == nil:
		return fmt.Errorf("%w: nil fn", ErrInvalidOption)
	}
	return nil
}

// holdKey is the context key under which runHolding passes the hold to fn.
type holdKey struct{}

// FromContext returns the hold that Manager.WithLock or TryWithLock holds
// while it runs fn, from the context it passes to fn, and false for any
// other context. With WithLock calls nested in fn, it returns the hold of
// the innermost. The hold is the Manager's to release: fn may read it,
// guard writes with it and refresh it, but Release ends the lock under fn
// (its context is then cancelled).
func FromContext(ctx context.Context) (Lock, bool) {
	lk, ok := ctx.Value(holdKey{}).(Lock)
	return lk, ok
}

// runHolding runs fn with a context that carries lk and ends when lk is
// lost, then releases lk with a bounded context of its own, also if fn
// panics.
func runHolding(ctx context.Context, lk Lock, fn func(ctx context.Context) error) (err error) {
	fctx, cancel := context.WithCancelCause(context.WithValue(ctx, holdKey{}, lk))
	defer cancel(nil)
	stopWatch := make(chan struct{})
	watching := make(chan struct{})
	var lost error // the cause given to fctx, once lk is lost
	go func() {
		defer close(watching)
		select {
		case <-lk.Done():
			if err := lk.Err(); err != nil && !errors.Is(err, ErrNotHeld) {
				lost = fmt.Errorf("etcdlock: lock %q: %w", lk.Key(), err)
			} else {
				// Released under fn: not a loss, but fn no longer holds it.
				lost = fmt.Errorf("etcdlock: lock %q: released while fn ran: %w", lk.Key(), ErrNotHeld)
			}
			cancel(lost)
		case <-stopWatch:
		}
	}()
	defer func() {
		close(stopWatch)
		<-watching
		lostErr := lk.Err()
		rctx, rcancel := etcderr.Cleanup(ctx)
		defer rcancel()
		rerr := lk.Release(rctx)
		switch {
		case lostErr != nil && !errors.Is(lostErr, ErrNotHeld):
			if lost == nil {
				lost = fmt.Errorf("etcdlock: lock %q: %w", lk.Key(), lostErr)
			}
			if !errors.Is(err, lost) {
				// fn did not return the loss itself (its ctx's cause).
				err = errs.Join(err, lost)
			}
		case rerr != nil:
			err = errs.Join(err, rerr)
		}
	}()
	return fn(fctx)
}

// AcquireLock returns the lock key this Manager already holds if it is
// still valid, and otherwise waits for it with AutoRefresh and tracks it
// until ReleaseLock or ReleaseAll.
//
// AcquireLock does not exclude goroutines that share the Manager from each
// other: it tracks one hold per key, and returns that same hold to every
// goroutine that asks for the key while it is valid, without waiting. One
// ReleaseLock releases it for all of them. For mutual exclusion between
// goroutines, use WithLock, or a Locker's Lock, which queue each caller.
// Inside WithLock's fn, use FromContext for the hold, not AcquireLock.
func (m *Manager) AcquireLock(ctx context.Context, key string, ttl time.Duration) (Lock, error) {
	if m.dl == nil {
		return nil, fmt.Errorf("%w: Manager of a nil DistributedLock", ErrInvalidOption)
	}
	m.mu.Lock()
	lk := m.locks[key]
	m.mu.Unlock()
	if lk != nil {
		ok, err := lk.IsValid(ctx)
		if err != nil {
			// Acquiring again now would queue behind this very hold.
			return nil, err
		}
		if ok {
			return lk, nil
		}
	}
	lk, err := m.dl.LockWithOptions(ctx, LockOptions{Key: key, TTL: ttl, AutoRefresh: true})
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	old := m.locks[key]
	m.locks[key] = lk
	m.mu.Unlock()
	if old != nil {
		// Lost, or raced by another AcquireLock: either way not ours to keep.
		old.Release(ctx)
	}
	return lk, nil
}

// ReleaseLock releases the tracked lock key. It returns ErrNotHeld if the
// Manager tracks no such lock, or it was lost.
func (m *Manager) ReleaseLock(ctx context.Context, key string) error {
	m.mu.Lock()
	lk := m.locks[key]
	delete(m.locks, key)
	m.mu.Unlock()
	if lk == nil {
		return fmt.Errorf("%w: %q is not tracked", ErrNotHeld, key)
	}
	return lk.Release(ctx)
}

// ReleaseAll releases every tracked lock and returns the errors of those
// still held that could not be released.
func (m *Manager) ReleaseAll(ctx context.Context) error {
	m.mu.Lock()
	locks := m.locks
	m.locks = map[string]Lock{}
	m.mu.Unlock()
	var failed []error
	for _, lk := range locks {
		if err := lk.Release(ctx); err != nil && !errors.Is(err, ErrNotHeld) {
			failed = append(failed, err)
		}
	}
	return errs.Join(failed...)
}
