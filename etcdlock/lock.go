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

	"github.com/leasekit/leasekit/internal/etcderr"
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
	// token. A ttl that etcd would grant as the current TTL (whole
	// seconds, raised to etcd's minimum) is a keepalive; another moves the
	// hold to a lease of that TTL. The call ends when ctx ends, the lock
	// is lost or the Locker closes, and never reports success for a lost
	// lock: once the client-side deadline has passed, it returns an error
	// wrapping ErrNotHeld and ErrLockLost. A move whose outcome ctx cut
	// short is resolved before Refresh returns (see docs/safety.md), so the
	// hold always tracks the lease its key is on, or counts as lost.
	Refresh(ctx context.Context, ttl time.Duration) error
	// Release gives the lock up and wakes the next waiter. It returns
	// ErrNotHeld if the lock was already released or lost; release a lost
	// lock all the same, to free what the Locker keeps for it. It ends
	// when ctx ends or the Locker closes, and never waits for a Refresh.
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
	// an error wrapping ErrLockLost after a loss. It never waits for a
	// call in flight: `<-lk.Done(); lk.Err()` returns at once.
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

	refreshing chan struct{} // a token per Refresh in flight: one at a time

	// mu guards the fields below. It is never held across a network
	// call, so nothing waits behind a Refresh or a Release in flight.
	mu       sync.Mutex
	lease    *lease.Lease // the lease the key is on
	own      bool         // the lease is this hold's alone
	modRev   int64        // the key's mod revision, as this hold last wrote it
	orphaned bool         // the janitor deletes the key and frees the slot
	released atomic.Bool  // set before the entry ends by Release
}

func newLock(l *Locker, sp spec, j joined) *lock {
	return &lock{
		locker: l, spec: sp, entry: j.entry, slot: j.slot, acquired: time.Now(),
		refreshing: make(chan struct{}, 1), lease: j.lease, own: j.own, modRev: j.entry.Rev(),
	}
}

func (lk *lock) Key() string                 { return lk.spec.name }
func (lk *lock) Token() int64                { return lk.entry.Rev() }
func (lk *lock) Done() <-chan struct{}       { return lk.entry.Done() }
func (lk *lock) Guard() clientv3.Cmp         { return lk.entry.Guard() }
func (lk *lock) Metadata() map[string]string { return maps.Clone(lk.spec.meta) }

// current returns the lease the hold is on and whether it is its own.
func (lk *lock) current() (*lease.Lease, bool) {
	lk.mu.Lock()
	defer lk.mu.Unlock()
	return lk.lease, lk.own
}

func (lk *lock) TTL() time.Duration {
	ls, _ := lk.current()
	return ls.TTL()
}

func (lk *lock) ExpiresAt() time.Time {
	ls, _ := lk.current()
	return ls.ExpiresAt()
}

func (lk *lock) Err() error {
	select {
	case <-lk.entry.Done():
	default:
		return nil
	}
	if lk.released.Load() {
		return ErrNotHeld
	}
	return fmt.Errorf("%w: %w", ErrLockLost, lk.cause())
}

// cause says why a hold that was not released ended.
func (lk *lock) cause() error {
	ls, _ := lk.current()
	if err := ls.Err(); err != nil {
		return err
	}
	if err := lk.entry.Err(); err != nil && !errors.Is(err, queue.ErrLeft) {
		return err
	}
	return queue.ErrGone
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
	// A Release in flight ends with the Locker: Close takes over.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(lk.locker.ctx, cancel)()
	return lk.release(ctx)
}

// release is Release with ctx as given: Close's own is already bounded.
func (lk *lock) release(ctx context.Context) error {
	lost := lk.Err()
	lk.mu.Lock()
	if !lk.released.CompareAndSwap(false, true) {
		lk.mu.Unlock()
		return fmt.Errorf("%w: already released", ErrNotHeld)
	}
	ls, own, orphaned := lk.lease, lk.own, lk.orphaned
	lk.mu.Unlock()
	lk.locker.untrack(lk)
	if orphaned {
		// A move of unknown outcome gave the key to the janitor, and the
		// hold was counted lost then.
		lk.entry.Close()
		if own {
			ls.Revoke(ctx)
		}
		return fmt.Errorf("%w: %w", ErrNotHeld, lost)
	}
	if err := lk.locker.clientErr(); err != nil {
		// Nothing can be deleted: the lease's expiry frees the lock.
		lk.entry.Close()
		if own {
			ls.Close()
		}
		lk.freeSlot()
		return err
	}
	var err error
	if own {
		// The lease is this hold's alone: revoking it deletes the key.
		lk.entry.Close()
		if err = ls.Revoke(ctx); errors.Is(err, lease.ErrNotFound) {
			err = fmt.Errorf("%w: %w", ErrNotHeld, err)
		} else if lost != nil {
			// The loss is the answer; nothing renews the lease any more.
			err = nil
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

// errHoldEnded cancels a Refresh whose hold ended while it ran.
var errHoldEnded = errors.New("etcdlock: hold ended")

func (lk *lock) Refresh(ctx context.Context, ttl time.Duration) error {
	if ttl <= 0 || ttl > MaxTTL {
		return fmt.Errorf("%w: refresh TTL %v", ErrInvalidTTL, ttl)
	}
	if err := lk.Err(); err != nil {
		return lk.notHeld(err)
	}
	if err := lk.locker.enter(); err != nil {
		return fmt.Errorf("%w: %w", ErrNotHeld, err) // Close releases it
	}
	defer lk.locker.wg.Done()
	if err := lk.locker.clientErr(); err != nil {
		return err
	}
	// Nothing is left to refresh once the hold or the Locker ends.
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	defer context.AfterFunc(lk.entry.Context(), func() { cancel(errHoldEnded) })()
	defer context.AfterFunc(lk.locker.ctx, func() { cancel(ErrClosed) })()
	select {
	case lk.refreshing <- struct{}{}:
		defer func() { <-lk.refreshing }()
		err := lk.refresh(ctx, ttl)
		if lost := lk.Err(); lost != nil {
			return lk.notHeld(lost)
		}
		if errors.Is(err, lease.ErrExpired) || errors.Is(err, lease.ErrNotFound) {
			// The lease ended; Done is about to close.
			return fmt.Errorf("%w: %w: %w", ErrNotHeld, ErrLockLost, err)
		}
		return err
	case <-ctx.Done():
		if lost := lk.Err(); lost != nil {
			return lk.notHeld(lost)
		}
		return context.Cause(ctx)
	}
}

// notHeld is what Refresh returns for a hold that ended with err.
func (lk *lock) notHeld(err error) error {
	if lk.released.Load() {
		return fmt.Errorf("%w: released", ErrNotHeld)
	}
	return fmt.Errorf("%w: %w", ErrNotHeld, err)
}

func (lk *lock) refresh(ctx context.Context, ttl time.Duration) error {
	cur, curOwn := lk.current()
	if lk.locker.wouldGrant(ttl) == cur.TTL() {
		return cur.KeepAliveOnce(ctx)
	}
	sp := lk.spec
	sp.ttl = ttl
	next, own, err := lk.locker.leaseFor(ctx, sp)
	if err != nil {
		return err
	}
	if next.TTL() == cur.TTL() {
		// etcd raised the TTL to the one the hold has: keep it alive
		// where it is.
		if own {
			next.RevokeDetached()
		}
		return cur.KeepAliveOnce(ctx)
	}
	return lk.moveLease(ctx, cur, curOwn, next, own)
}

// errMoveUnknown is why a hold counts as lost when a move of unknown
// outcome could not be resolved.
var errMoveUnknown = errors.New("refresh moved the key to another lease, or not: etcd did not say")

// moveLease puts the hold's key on the lease next. The key keeps its
// create revision, so the hold keeps its token and place.
//
// While the move's outcome is unknown, the key may be on either lease, so
// the hold ends if either does. The move is guarded by the key's mod
// revision: if ctx ends before etcd answers, a write guarded the same way
// puts the key back on cur unless the move landed, which settles where the
// key is, and keeps a move still in flight from landing later.
func (lk *lock) moveLease(ctx context.Context, cur *lease.Lease, curOwn bool, next *lease.Lease, own bool) error {
	lk.mu.Lock()
	m := leaseMove{lk: lk, key: lk.entry.Key(), mod: lk.modRev, cur: cur, curOwn: curOwn, next: next, own: own}
	lk.mu.Unlock()
	either, stop := eitherContext(cur.Context(), next.Context())
	defer stop()
	lk.entry.Rebind(either)
	resp, err := m.send(ctx)
	// What follows is cleanup, bounded by its own context.
	cctx, cancel := etcderr.Cleanup(context.Background())
	defer cancel()
	var on *lease.Lease // the lease the key is on; nil if it is gone
	switch {
	case err == nil:
		if on = m.settle(resp, next); on == cur {
			err = fmt.Errorf("etcdlock: refresh: key %q changed during the move", m.key)
		}
	case !etcderr.Ambiguous(err):
		on = cur // etcd refused the move (permission denied, say)
	default:
		// The fence: unless the move landed, it puts the key back where it
		// is, which bumps the mod revision the move is guarded by.
		fence, ferr := m.write(cctx, cur)
		if ferr != nil {
			lk.orphan(errMoveUnknown)
			if own {
				next.Close() // it may carry the key: let it expire with it
			}
			return err
		}
		on = m.settle(fence, cur)
	}
	if on == next {
		err = nil // it happened, ctx or not
	}
	return m.adopt(cctx, on, err)
}

// leaseMove is one moveLease: the hold's key, from the lease cur to next,
// guarded by the key's mod revision.
type leaseMove struct {
	lk          *lock
	key         string
	mod         int64 // the key's mod revision, as last seen
	cur, next   *lease.Lease
	curOwn, own bool // whether cur, and next, are the hold's own lease
}

// write puts the key on the lease to if the hold still holds and the key
// is unchanged since mod; else it reads the key.
func (m *leaseMove) write(ctx context.Context, to *lease.Lease) (*clientv3.TxnResponse, error) {
	guard := []clientv3.Cmp{m.lk.Guard(), clientv3.Compare(clientv3.ModRevision(m.key), "=", m.mod)}
	put := clientv3.OpPut(m.key, "", clientv3.WithIgnoreValue(), clientv3.WithLease(to.ID()))
	return m.lk.locker.cli.Txn(ctx).If(guard...).Then(put).Else(clientv3.OpGet(m.key)).Commit()
}

// send writes the move, and once more if the key was written from
// outside meanwhile, on the same lease.
func (m *leaseMove) send(ctx context.Context) (*clientv3.TxnResponse, error) {
	resp, err := m.write(ctx, m.next)
	if err == nil && !resp.Succeeded && m.settle(resp, m.next) == m.cur {
		resp, err = m.write(ctx, m.next)
	}
	return resp, err
}

// settle reads where a write to the lease written left the key: on that
// lease if the guard held, else where the key's current version says. It
// returns the lease, nil if the key is gone or on neither cur nor next,
// and sets mod to the key's mod revision.
func (m *leaseMove) settle(resp *clientv3.TxnResponse, written *lease.Lease) *lease.Lease {
	if resp.Succeeded {
		m.mod = resp.Header.Revision
		return written
	}
	m.mod = 0
	kvs := resp.Responses[0].GetResponseRange().Kvs
	if len(kvs) == 0 || kvs[0].CreateRevision != m.lk.Token() {
		return nil
	}
	var on *lease.Lease
	switch clientv3.LeaseID(kvs[0].Lease) {
	case m.next.ID():
		on = m.next
	case m.cur.ID():
		on = m.cur
	default:
		return nil
	}
	m.mod = kvs[0].ModRevision
	return on
}

// adopt makes the hold track the lease on, the one its key is on after
// the move, and revokes the other if it is the hold's own. It returns
// err, or ErrNotHeld if the key is gone or the hold was released
// meanwhile.
func (m *leaseMove) adopt(ctx context.Context, on *lease.Lease, err error) error {
	lk := m.lk
	if on == nil {
		// The key is gone, or on a lease this hold does not know.
		lk.entry.Lose(queue.ErrGone)
		if m.own {
			m.next.Revoke(ctx)
		}
		return fmt.Errorf("%w: key gone", ErrNotHeld)
	}
	lk.mu.Lock()
	if lk.released.Load() {
		// Release ran meanwhile, on cur: next, if the hold's own, goes
		// with the key if the key is on it; a shared one's key is
		// Release's to delete.
		lk.mu.Unlock()
		if m.own {
			m.next.Revoke(ctx)
		}
		return fmt.Errorf("%w: released", ErrNotHeld)
	}
	off, offOwn := m.next, m.own
	if on == m.next {
		off, offOwn = m.cur, m.curOwn
		lk.lease, lk.own = m.next, m.own
	}
	lk.modRev = m.mod
	lk.entry.Rebind(on.Context())
	lk.mu.Unlock()
	if offOwn {
		off.Revoke(ctx)
	}
	return err
}

// orphan counts the hold as lost when where its key is cannot be known,
// and hands the key to the janitor, which deletes it (guarded by its
// create revision, whatever lease it is on) and then frees the slot.
func (lk *lock) orphan(why error) {
	lk.entry.Lose(why)
	o := orphan{key: lk.entry.Key(), rev: lk.Token(), queue: lk.spec.queue, slot: lk.slot}
	lk.mu.Lock()
	if lk.released.Load() {
		o.slot = noSlot // Release has freed it
	}
	lk.orphaned = true
	lk.mu.Unlock()
	lk.locker.dispose(o)
}

// eitherContext returns a context that ends when a or b does, and a
// function that releases it.
func eitherContext(a, b context.Context) (context.Context, func()) {
	ctx, cancel := context.WithCancel(a)
	stop := context.AfterFunc(b, cancel)
	return ctx, func() { stop(); cancel() }
}
