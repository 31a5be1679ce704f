package etcdlock

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/leasekit/leasekit/internal/etcderr"
	"github.com/leasekit/leasekit/internal/lease"
	"github.com/leasekit/leasekit/internal/queue"
)

// The acquire path, the same for every shape of hold, top-down:
//
//	acquire   validate opts, bound the wait (Timeout, Close), report metrics
//	take      Try's read-only look, then join, wait, hold
//	join      a slot's key in the shape's queue, on the hold's lease;
//	          tried again once when a shared lease is gone or etcd did
//	          not say whether the key was written (that key goes to the
//	          janitor)
//	waitTurn  the queue's wait, keeping a lease of the hold's own alive
//	hold      the tracked *lock, or abandon: delete the key that will
//	          not be a hold
//
// and below them the leases (leaseFor: a shared keepalive lease per TTL,
// or a lease of the hold's own) and the slots that name the keys.

// errBusy is acquire's answer, without wait, to a hold that would wait.
var errBusy = errors.New("etcdlock: busy")

// spec is a validated acquisition.
type spec struct {
	kind      string // "lock", "semaphore", ...: for errors
	name      string
	queue     string // the queue's key prefix, ending in '/'
	ttl       time.Duration
	keepalive bool
	value     string
	meta      map[string]string
}

// joined is a hold's key in its queue: the entry, the lease it is on and
// the slot that names it.
type joined struct {
	entry *queue.Entry
	lease *lease.Lease
	own   bool // the lease is this hold's alone
	slot  int
}

// acquire is what every Lock, TryLock, Acquire, RLock and their variants
// come down to. It ends the wait when opts.Timeout passes or the Locker
// closes, and reports metrics. With wait unset it returns errBusy rather
// than wait.
func (l *Locker) acquire(ctx context.Context, sh shape, opts LockOptions, wait bool) (Lock, error) {
	sp, err := l.spec(sh, opts)
	if err != nil {
		return nil, err
	}
	if err := l.enter(); err != nil {
		return nil, err
	}
	defer l.wg.Done()
	if err := cmp.Or(l.clientErr(), ctx.Err()); err != nil {
		return nil, fmt.Errorf("etcdlock: %s %q: %w", sp.kind, sp.name, err)
	}
	ctx, stop := l.bound(ctx, opts.Timeout)
	defer stop()

	start := time.Now()
	lk, err := l.take(ctx, sh, sp, wait)
	switch {
	case err == nil:
		l.metrics.Acquired(sp.name, time.Since(start))
		return lk, nil
	case errors.Is(err, errBusy):
		return nil, err
	case errors.Is(context.Cause(ctx), ErrClosed):
		err = ErrClosed
	}
	l.metrics.Failed(sp.name, etcderr.Reason(err, ErrLockLost))
	return nil, fmt.Errorf("etcdlock: %s %q: %w", sp.kind, sp.name, err)
}

// try is acquire without waiting, in TryLock's shape: (nil, false, nil)
// when the hold would have to wait.
func (l *Locker) try(ctx context.Context, sh shape, opts LockOptions) (Lock, bool, error) {
	lk, err := l.acquire(ctx, sh, opts, false)
	if errors.Is(err, errBusy) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	return lk, true, nil
}

// spec checks opts for a hold of shape sh: they name sh's name or nothing,
// and their TTLs, durations and metadata are valid.
func (l *Locker) spec(sh shape, opts LockOptions) (spec, error) {
	kind, name := sh.describe()
	if opts.Key != "" && opts.Key != name {
		return spec{}, fmt.Errorf("%w: options name %q, not %q", ErrInvalidKey, opts.Key, name)
	}
	ttl := opts.TTL
	if opts.AutoRefresh && opts.RefreshTTL != 0 {
		ttl = opts.RefreshTTL
	}
	switch {
	case opts.TTL <= 0:
		return spec{}, fmt.Errorf("%w: TTL %v must be positive", ErrInvalidTTL, opts.TTL)
	case ttl <= 0:
		return spec{}, fmt.Errorf("%w: RefreshTTL %v must be positive", ErrInvalidTTL, opts.RefreshTTL)
	case ttl > MaxTTL:
		return spec{}, fmt.Errorf("%w: TTL %v is above etcd's maximum %v", ErrInvalidTTL, ttl, MaxTTL)
	case opts.Timeout < 0 || opts.RetryInterval < 0:
		return spec{}, fmt.Errorf("%w: negative Timeout or RetryInterval", ErrInvalidTTL)
	}
	sp := spec{
		kind: kind, name: name, queue: sh.queue().Prefix(), ttl: ttl, keepalive: opts.AutoRefresh,
		value: l.value, meta: l.meta,
	}
	if len(opts.Metadata) == 0 {
		return sp, nil
	}
	sp.meta = maps.Clone(l.meta)
	maps.Copy(sp.meta, opts.Metadata)
	value, err := json.Marshal(sp.meta)
	if err != nil {
		return spec{}, fmt.Errorf("%w: %v", ErrInvalidMetadata, err)
	}
	if len(value) > MaxMetadataBytes {
		return spec{}, fmt.Errorf("%w: %d bytes encoded; the limit is %d", ErrInvalidMetadata, len(value), MaxMetadataBytes)
	}
	sp.value = string(value)
	return sp, nil
}

// bound returns ctx, ended also when timeout (if positive) passes and, with
// ErrClosed as its cause, when the Locker closes; and a function that
// releases it.
func (l *Locker) bound(ctx context.Context, timeout time.Duration) (context.Context, func()) {
	stopTimeout := func() {}
	if timeout > 0 {
		ctx, stopTimeout = context.WithTimeout(ctx, timeout)
	}
	ctx, cancel := context.WithCancelCause(ctx)
	stopClose := context.AfterFunc(l.ctx, func() { cancel(ErrClosed) })
	return ctx, func() {
		stopClose()
		cancel(nil)
		stopTimeout()
	}
}

// take joins sh's queue and, if wait is set, waits for its turn. Without
// wait it looks first, so that a busy name costs one read and no write.
func (l *Locker) take(ctx context.Context, sh shape, sp spec, wait bool) (*lock, error) {
	if !wait {
		busy, err := sh.busy(ctx)
		if err != nil {
			return nil, err
		}
		if busy {
			return nil, errBusy
		}
	}
	j, err := l.join(ctx, sh, sp)
	if err != nil {
		return nil, err
	}
	if !j.entry.Admitted() {
		err := errBusy
		if wait {
			err = l.waitTurn(ctx, sp, j)
		}
		if err != nil {
			l.abandon(sp, j)
			return nil, err
		}
	}
	return l.hold(sp, j)
}

// join puts the hold's key in sh's queue, on the lease leaseFor gives it.
// It tries once more when a shared lease turns out to be gone, and, under
// another key, when etcd did not say whether the key was written: the
// janitor sees to that key.
func (l *Locker) join(ctx context.Context, sh shape, sp spec) (joined, error) {
	j := joined{slot: l.takeSlot(sp.queue)}
	for attempt := 0; ; attempt++ {
		var err error
		if j.lease, j.own, err = l.leaseFor(ctx, sp); err != nil {
			l.freeSlot(sp.queue, j.slot)
			return joined{}, err
		}
		key := sh.key(fmt.Sprintf("%s-%d", l.id, j.slot))
		j.entry, err = sh.join(ctx, key, sp.value, j.lease)
		again := attempt == 0 && ctx.Err() == nil
		switch {
		case err == nil:
			return j, nil
		case again && !j.own && errors.Is(err, rpctypes.ErrLeaseNotFound):
			// The shared lease went (revoked, say) before its keepalive
			// noticed: drop it and take a new one.
			j.lease.Gone()
			continue
		case errors.Is(err, queue.ErrAmbiguous):
			// The key may exist, or yet appear; the janitor deletes it
			// once no write can land any more.
			l.dispose(orphan{key: key, queue: sp.queue, slot: j.slot, until: time.Now().Add(inFlight)})
		default:
			l.freeSlot(sp.queue, j.slot)
		}
		if j.own {
			j.lease.RevokeDetached()
		}
		if !again || !errors.Is(err, queue.ErrAmbiguous) {
			return joined{}, err
		}
		j.slot = l.takeSlot(sp.queue)
	}
}

// waitTurn waits for the entry's turn. A lease of the hold's own has no
// keepalive, so that its TTL runs out unless refreshed; while waiting it
// is kept alive all the same, and refreshed once more when the wait ends,
// so that the TTL counts from the grant.
func (l *Locker) waitTurn(ctx context.Context, sp spec, j joined) error {
	l.metrics.Waiting(sp.name, 1)
	defer l.metrics.Waiting(sp.name, -1)
	var err error
	if j.own {
		stop := j.lease.KeepAliveWhile()
		err = j.entry.Wait(ctx)
		stop()
		if err == nil {
			err = j.lease.KeepAliveOnce(ctx)
		}
	} else {
		err = j.entry.Wait(ctx)
	}
	if errors.Is(err, queue.ErrGone) || errors.Is(err, lease.ErrExpired) || errors.Is(err, lease.ErrNotFound) {
		err = fmt.Errorf("%w: %w while waiting", ErrLockLost, leaseOrKey(j.lease))
	}
	return err
}

// hold returns the admitted entry as a tracked hold. It never hands out a
// hold whose Done is closed, nor one Close has overtaken.
func (l *Locker) hold(sp spec, j joined) (*lock, error) {
	if j.entry.Err() != nil {
		err := fmt.Errorf("%w: %w", ErrLockLost, leaseOrKey(j.lease))
		l.abandon(sp, j)
		return nil, err
	}
	lk := newLock(l, sp, j)
	if !l.track(lk) {
		ctx, cancel := etcderr.Cleanup(context.Background())
		defer cancel()
		lk.release(ctx)
		return nil, ErrClosed
	}
	lk.entry.AfterEnd(lk.onEnd)
	return lk, nil
}

// leaseOrKey says whether a loss came from the lease or from the key.
func leaseOrKey(ls *lease.Lease) error {
	if err := ls.Err(); err != nil {
		return err
	}
	return queue.ErrGone
}

// abandon removes a key that will not be a hold, with a context of its
// own. A lease of the hold's own takes the key with it; on a shared lease,
// a key that cannot be deleted now is handed to the janitor: the
// keepalive would keep it, and it would block the queue, for good.
func (l *Locker) abandon(sp spec, j joined) {
	if j.own {
		j.entry.Close()
		j.lease.RevokeDetached()
		l.freeSlot(sp.queue, j.slot)
		return
	}
	ctx, cancel := etcderr.Cleanup(context.Background())
	defer cancel()
	if err := j.entry.Leave(ctx); err != nil && !errors.Is(err, queue.ErrGone) {
		l.dispose(orphan{key: j.entry.Key(), rev: j.entry.Rev(), queue: sp.queue, slot: j.slot})
		return
	}
	l.freeSlot(sp.queue, j.slot)
}

// wouldGrant returns the TTL etcd would grant for ttl: whole seconds, and
// at least etcd's minimum once a grant has shown it.
func (l *Locker) wouldGrant(ttl time.Duration) time.Duration {
	return time.Duration(max(lease.Seconds(ttl), l.floor.Load())) * time.Second
}

// learn notes etcd's minimum TTL if ls, granted for ttl, shows it.
func (l *Locker) learn(ttl time.Duration, ls *lease.Lease) {
	if granted := int64(ls.TTL() / time.Second); granted > lease.Seconds(ttl) {
		for {
			floor := l.floor.Load()
			if floor >= granted || l.floor.CompareAndSwap(floor, granted) {
				return
			}
		}
	}
}

// grantCall is a grant of a shared lease in flight. Callers that need the
// lease wait for it, each only as long as its own ctx; the grant stops
// when none is left waiting, or on Close.
type grantCall struct {
	done    chan struct{} // closed when ls and err are set
	cancel  context.CancelFunc
	waiters int // guarded by Locker.mu
	ls      *lease.Lease
	err     error
}

// leaseFor returns the lease a new hold goes on: a shared keepalive lease
// for AutoRefresh, else a lease of its own. own reports the latter.
func (l *Locker) leaseFor(ctx context.Context, sp spec) (ls *lease.Lease, own bool, err error) {
	if !sp.keepalive {
		ls, err = lease.Grant(ctx, l.cli, sp.ttl, false, l.lg)
		if err == nil {
			l.learn(sp.ttl, ls)
		}
		return ls, true, err
	}
	secs := int64(l.wouldGrant(sp.ttl) / time.Second)
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil, false, ErrClosed
	}
	if ls := l.shared[secs]; ls != nil && ls.Alive() {
		l.mu.Unlock()
		return ls, false, nil
	}
	c := l.granting[secs]
	if c == nil {
		gctx, cancel := context.WithCancel(l.ctx)
		c = &grantCall{done: make(chan struct{}), cancel: cancel}
		l.granting[secs] = c
		l.wg.Add(1)
		go l.grant(gctx, secs, sp.ttl, c)
	}
	c.waiters++
	l.mu.Unlock()
	select {
	case <-c.done:
		return c.ls, false, c.err
	case <-ctx.Done():
		l.mu.Lock()
		if c.waiters--; c.waiters == 0 && l.granting[secs] == c {
			delete(l.granting, secs)
			c.cancel()
		}
		l.mu.Unlock()
		return nil, false, ctx.Err()
	}
}

// grant grants the shared lease for secs on behalf of c's waiters, and
// keeps it in l.shared under the TTL etcd granted.
func (l *Locker) grant(ctx context.Context, secs int64, ttl time.Duration, c *grantCall) {
	defer l.wg.Done()
	defer c.cancel()
	ls, err := lease.Grant(ctx, l.cli, ttl, true, l.lg)
	var drop, old *lease.Lease
	if err == nil {
		l.learn(ttl, ls)
	}
	l.mu.Lock()
	if l.granting[secs] == c {
		delete(l.granting, secs)
	}
	if err == nil {
		granted := int64(ls.TTL() / time.Second)
		switch have := l.shared[granted]; {
		case l.closed:
			drop, ls, err = ls, nil, ErrClosed
		case have != nil && have.Alive():
			// etcd raised the TTL to one a lease is kept for already.
			drop, ls = ls, have
		default:
			old = have
			l.shared[granted] = ls
		}
	}
	c.ls, c.err = ls, err
	l.mu.Unlock()
	close(c.done)
	if drop != nil {
		drop.RevokeDetached()
	}
	if old != nil {
		old.Close()
	}
}

// takeSlot returns the lowest slot of queue free in this Locker. A hold's
// key is "<queue><locker id>-<slot>": reusing keys, rather than making a new
// one per acquisition, keeps etcd's key index from filling with the
// tombstones of deleted keys, which every read of the queue would walk
// until the next compaction.
func (l *Locker) takeSlot(queue string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	used := l.slots[queue]
	if used == nil {
		used = map[int]bool{}
		l.slots[queue] = used
	}
	slot := 0
	for used[slot] {
		slot++
	}
	used[slot] = true
	return slot
}

// freeSlot returns a slot whose key is gone, or whose delete was at least
// tried: Join refuses a key that still exists.
func (l *Locker) freeSlot(queue string, slot int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.slots[queue], slot)
	if len(l.slots[queue]) == 0 {
		delete(l.slots, queue)
	}
}
