package etcdlock

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/leasekit/leasekit/internal/errs"
	"github.com/leasekit/leasekit/internal/etcderr"
	"github.com/leasekit/leasekit/internal/keys"
	"github.com/leasekit/leasekit/internal/lease"
	"github.com/leasekit/leasekit/internal/queue"
)

// MaxTTL is the longest TTL etcd grants.
const MaxTTL = 9_000_000_000 * time.Second

// MaxMetadataBytes bounds the encoded metadata stored with a hold, far below
// etcd's 1.5 MiB request limit.
const MaxMetadataBytes = 64 << 10

// DistributedLock is the lock API of the architecture decision record "Use
// Distributed Lock Pattern", a design note outside this repository that
// leasekit started from, kept so that code written against it works
// unchanged. *Locker implements it.
type DistributedLock interface {
	// Lock waits for the named lock and holds it for ttl unless refreshed.
	Lock(ctx context.Context, key string, ttl time.Duration) (Lock, error)
	// TryLock takes the named lock if it is free, without waiting.
	TryLock(ctx context.Context, key string, ttl time.Duration) (Lock, bool, error)
	// LockWithOptions waits for a lock as opts describe.
	LockWithOptions(ctx context.Context, opts LockOptions) (Lock, error)
}

// LockOptions describes an acquisition for LockWithOptions.
type LockOptions struct {
	// Key is the lock's name: any non-empty UTF-8 string of at most
	// MaxNameLen bytes. Names never collide: "a", "a/" and "a/b" are three
	// locks.
	Key string
	// TTL is how long the lock lives without a refresh, rounded up to
	// whole seconds; etcd raises it to its minimum (2s by default). Lock.TTL
	// reports what was granted.
	TTL time.Duration
	// Timeout, if positive, bounds the wait; the error then wraps
	// context.DeadlineExceeded.
	Timeout time.Duration
	// RetryInterval is accepted for compatibility with polling designs and
	// ignored: a waiter is woken by a watch the moment its turn comes.
	RetryInterval time.Duration
	// Metadata is stored with the hold, beside the holder's hostname and
	// process ID. Inspect returns it.
	Metadata map[string]string
	// AutoRefresh keeps the lock alive with lease keepalives until Release,
	// Close or loss. Locks with AutoRefresh and the same TTL share one lease
	// per Locker, so acquiring costs one round trip.
	AutoRefresh bool
	// RefreshTTL, if set, is the lease TTL used with AutoRefresh instead of
	// TTL: how long a holder that stops keeping alive keeps the lock.
	RefreshTTL time.Duration
}

// MaxNameLen is the longest lock name (LockOptions.Key, the key of Lock
// and TryLock), in bytes. Every leasekit package names its limit so.
const MaxNameLen = keys.MaxNameLen

// MaxKeyLen is the longest lock name, in bytes.
//
// Deprecated: Use MaxNameLen, the name every leasekit package uses.
const MaxKeyLen = MaxNameLen

// Locker hands out fair, fenced locks stored in etcd. Waiters are served in
// the order they asked (FIFO); each watches only the waiter before it.
//
// A Locker is safe for concurrent use. Make one per process and share it:
// its AutoRefresh locks share leases and one keepalive per TTL. Close
// releases everything it holds.
type Locker struct {
	cli     *clientv3.Client
	prefix  string
	lg      *zap.Logger
	metrics Metrics
	meta    map[string]string

	ctx      context.Context // ends on Close; waits end with it
	cancel   context.CancelFunc
	value    string        // meta, encoded: the value of holds without metadata of their own
	id       string        // random; names this Locker's keys
	closeEnd chan struct{} // closed when the first Close has finished

	floor atomic.Int64 // etcd's minimum TTL in seconds, once a grant showed it

	// mu guards the fields below. It is never held across a network call.
	mu       sync.Mutex
	closed   bool
	shared   map[int64]*lease.Lease // AutoRefresh leases by granted TTL in seconds
	granting map[int64]*grantCall   // grants of shared leases in flight, by TTL
	holds    map[*lock]struct{}
	slots    map[string]map[int]bool // queue prefix -> slots in use
	// orphans are keys a failed delete or a write of unknown outcome may
	// have left; a janitor goroutine deletes them while sweeping is set.
	orphans  []orphan
	sweeping bool
	wg       sync.WaitGroup // calls in flight, so Close can wait for them
}

var _ DistributedLock = (*Locker)(nil)

// New returns a Locker that keeps its locks in etcd through cli. The
// Locker does not own cli: close cli after the Locker.
func New(cli *clientv3.Client, opts ...Option) (*Locker, error) {
	o := options{prefix: DefaultPrefix, logger: zap.NewNop(), metrics: nopMetrics{}}
	for _, opt := range opts {
		if opt == nil {
			return nil, fmt.Errorf("%w: nil Option", ErrInvalidOption)
		}
		opt.apply(&o)
	}
	if cli == nil {
		return nil, fmt.Errorf("%w: nil etcd client", ErrInvalidOption)
	}
	prefix, err := keys.Prefix(o.prefix)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidOption, err)
	}
	if o.logger == nil || o.metrics == nil {
		return nil, fmt.Errorf("%w: nil logger or metrics", ErrInvalidOption)
	}
	meta := map[string]string{"pid": fmt.Sprint(os.Getpid())}
	if host, err := os.Hostname(); err == nil {
		meta["host"] = host
	}
	for k, v := range o.meta {
		meta[k] = v
	}
	l := &Locker{
		cli: cli, prefix: prefix, lg: o.logger, metrics: o.metrics, meta: meta,
		shared: map[int64]*lease.Lease{}, granting: map[int64]*grantCall{}, holds: map[*lock]struct{}{}, slots: map[string]map[int]bool{},
		id: randomID(), closeEnd: make(chan struct{}),
	}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	value, err := json.Marshal(meta)
	if err != nil || len(value) > MaxMetadataBytes {
		return nil, fmt.Errorf("%w: WithMetadata: %d bytes encoded, limit %d (%v)", ErrInvalidMetadata, len(value), MaxMetadataBytes, err)
	}
	l.value = string(value)
	return l, nil
}

// Lock is shorthand for LockWithOptions(ctx, LockOptions{Key: key, TTL: ttl}):
// it waits for the named lock and returns it held. Without a Refresh the
// lock expires after ttl (rounded up to whole seconds, and at least etcd's
// minimum).
func (l *Locker) Lock(ctx context.Context, key string, ttl time.Duration) (Lock, error) {
	return l.LockWithOptions(ctx, LockOptions{Key: key, TTL: ttl})
}

// LockWithOptions waits for a lock as opts describe. If ctx ends or
// opts.Timeout passes first, the wait leaves the queue and the error wraps
// the context's error.
func (l *Locker) LockWithOptions(ctx context.Context, opts LockOptions) (Lock, error) {
	return l.acquire(ctx, opts, true)
}

// TryLock is shorthand for TryLockWithOptions(ctx, LockOptions{Key: key,
// TTL: ttl}): it takes the named lock if nobody holds or waits for it, and
// returns (nil, false, nil) otherwise. A TryLock that finds the lock taken
// writes nothing to etcd.
func (l *Locker) TryLock(ctx context.Context, key string, ttl time.Duration) (Lock, bool, error) {
	return l.TryLockWithOptions(ctx, LockOptions{Key: key, TTL: ttl})
}

// TryLockWithOptions is TryLock with the options of LockOptions; Timeout
// and RetryInterval do not apply. Manager.TryWithLock uses it for
// AutoRefresh.
func (l *Locker) TryLockWithOptions(ctx context.Context, opts LockOptions) (Lock, bool, error) {
	lk, err := l.acquire(ctx, opts, false)
	if errors.Is(err, errBusy) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	return lk, true, nil
}

// errBusy is acquire's answer to a TryLock that finds the lock taken.
var errBusy = errors.New("etcdlock: busy")

// spec is a validated acquisition.
type spec struct {
	name      string
	queue     string // the queue's key prefix, ending in '/'; set from the kind
	ttl       time.Duration
	keepalive bool
	value     string
	meta      map[string]string
}

// validate checks what opts say beyond the name, which the kind checked.
func (l *Locker) validate(opts LockOptions) (spec, error) {
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
	if len(opts.Metadata) == 0 {
		return spec{name: opts.Key, ttl: ttl, keepalive: opts.AutoRefresh, value: l.value, meta: l.meta}, nil
	}
	meta := make(map[string]string, len(l.meta)+len(opts.Metadata))
	for k, v := range l.meta {
		meta[k] = v
	}
	for k, v := range opts.Metadata {
		meta[k] = v
	}
	value, err := json.Marshal(meta)
	if err != nil {
		return spec{}, fmt.Errorf("%w: %v", ErrInvalidMetadata, err)
	}
	if len(value) > MaxMetadataBytes {
		return spec{}, fmt.Errorf("%w: %d bytes encoded; the limit is %d", ErrInvalidMetadata, len(value), MaxMetadataBytes)
	}
	return spec{
		name: opts.Key, ttl: ttl,
		keepalive: opts.AutoRefresh, value: string(value), meta: meta,
	}, nil
}

// clientErr reports a closed etcd client, through which every call would
// only fail after clientv3's retries.
func (l *Locker) clientErr() error {
	if err := l.cli.Ctx().Err(); err != nil {
		return fmt.Errorf("etcd client closed: %w", err)
	}
	return nil
}

// enter registers a call in flight; it fails after Close.
func (l *Locker) enter() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	l.wg.Add(1)
	return nil
}

// acquire is what every Lock and TryLock of a mutex comes down to.
func (l *Locker) acquire(ctx context.Context, opts LockOptions, wait bool) (Lock, error) {
	k, err := l.mutex(opts.Key)
	if err != nil {
		return nil, err
	}
	return l.acquireKind(ctx, k, opts, wait)
}

// mutex is the kind of a plain lock: admitted when no key is ahead.
func (l *Locker) mutex(name string) (kind, error) {
	enc, err := keys.Encode(name)
	if err != nil {
		return kind{}, fmt.Errorf("%w: %v", ErrInvalidKey, err)
	}
	k := kind{what: "lock", name: name, queue: l.prefix + enc + "/"}
	k.keyOf = func(id string) string { return k.queue + id }
	k.busy = func(ctx context.Context) (bool, error) {
		resp, err := l.cli.Get(ctx, k.queue, clientv3.WithPrefix(), clientv3.WithCountOnly())
		return err == nil && resp.Count > 0, err
	}
	k.join = func(ctx context.Context, sp spec, ls *lease.Lease, key string) (*queue.Entry, func(context.Context) error, error) {
		e, err := queue.New(l.cli, k.queue, queue.Rule{N: 1}).Join(ctx, key, sp.value, ls)
		if err != nil || e.Admitted() {
			return e, nil, err
		}
		return e, e.Wait, nil
	}
	return k, nil
}

// acquireKind takes a hold of kind k: it bounds the wait by opts.Timeout,
// ends it on Close, and reports metrics. With wait unset it returns
// errBusy rather than wait.
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
	if err := l.clientErr(); err != nil {
		return nil, fmt.Errorf("etcdlock: %s %q: %w", k.what, sp.name, err)
	}
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

// takeKind joins k's queue and, if wait is set, waits for its turn.
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
	// Keys are reused per Locker slot.
	slot := l.takeSlot(sp.queue)
	key := k.keyOf(fmt.Sprintf("%s-%d", l.id, slot))
	var ls *lease.Lease
	var own bool
	var e *queue.Entry
	var waitFn func(context.Context) error
	var err error
	for attempt := 0; ; attempt++ {
		if ls, own, err = l.leaseFor(ctx, sp); err != nil {
			l.freeSlot(sp.queue, slot)
			return nil, err
		}
		e, waitFn, err = k.join(ctx, sp, ls, key)
		if attempt > 0 || ctx.Err() != nil {
			break
		}
		if !own && errors.Is(err, rpctypes.ErrLeaseNotFound) {
			// The shared lease went (revoked, say) before its keepalive
			// noticed: drop it and take a new one, once.
			ls.Gone()
			continue
		}
		if errors.Is(err, queue.ErrAmbiguous) {
			// The key may exist, or yet appear; leave it to the janitor
			// and try once more under another.
			l.dispose(orphan{key: key, queue: sp.queue, slot: slot, until: time.Now().Add(inFlight)})
			if own {
				ls.RevokeDetached()
			}
			slot = l.takeSlot(sp.queue)
			key = k.keyOf(fmt.Sprintf("%s-%d", l.id, slot))
			continue
		}
		break
	}
	if err != nil {
		if errors.Is(err, queue.ErrAmbiguous) {
			l.dispose(orphan{key: key, queue: sp.queue, slot: slot, until: time.Now().Add(inFlight)})
		} else {
			l.freeSlot(sp.queue, slot)
		}
	}
	if err == nil && waitFn != nil {
		if !wait {
			err = errBusy
		} else {
			l.metrics.Waiting(sp.name, 1)
			err = l.wait(ctx, waitFn, ls, own)
			l.metrics.Waiting(sp.name, -1)
			if errors.Is(err, queue.ErrGone) || errors.Is(err, lease.ErrExpired) || errors.Is(err, lease.ErrNotFound) {
				err = fmt.Errorf("%w: %w while waiting", ErrLockLost, leaseOrKey(ls))
			}
		}
		if err != nil {
			l.cleanup(e, sp.queue, slot, ls, own)
			return nil, err
		}
	}
	if err != nil {
		if own {
			ls.RevokeDetached()
		}
		return nil, err
	}
	if e.Err() != nil {
		// Lost before it could be returned: never hand out a hold whose
		// Done is closed.
		err = fmt.Errorf("%w: %w", ErrLockLost, leaseOrKey(ls))
		l.cleanup(e, sp.queue, slot, ls, own)
		return nil, err
	}
	lk := newLock(l, sp, e, ls, own, slot)
	if !l.track(lk) {
		ctx, cancel := etcderr.Cleanup(context.Background())
		defer cancel()
		lk.release(ctx)
		return nil, ErrClosed
	}
	lk.entry.AfterEnd(lk.onEnd)
	return lk, nil
}

// wait runs waitFn. A lease of the hold's own has no keepalive, so that its
// TTL runs out unless refreshed; while waiting it is kept alive all the
// same, and refreshed once more when the wait ends, so that the TTL counts
// from the grant.
func (l *Locker) wait(ctx context.Context, waitFn func(context.Context) error, ls *lease.Lease, own bool) error {
	if !own {
		return waitFn(ctx)
	}
	stop := ls.KeepAliveWhile()
	err := waitFn(ctx)
	stop()
	if err == nil {
		err = ls.KeepAliveOnce(ctx)
	}
	return err
}

// leaseOrKey says whether a loss came from the lease or from the key.
func leaseOrKey(ls *lease.Lease) error {
	if err := ls.Err(); err != nil {
		return err
	}
	return queue.ErrGone
}

// cleanup removes a key that will not be a hold, with a context of its
// own. A lease of the hold's own takes the key with it; on a shared lease,
// a key that cannot be deleted now is handed to the janitor: the
// keepalive would keep it, and it would block the queue, for good.
func (l *Locker) cleanup(e *queue.Entry, queuePrefix string, slot int, ls *lease.Lease, own bool) {
	if own {
		e.Close()
		ls.RevokeDetached()
		l.freeSlot(queuePrefix, slot)
		return
	}
	ctx, cancel := etcderr.Cleanup(context.Background())
	defer cancel()
	if err := e.Leave(ctx); err != nil && !errors.Is(err, queue.ErrGone) {
		l.dispose(orphan{key: e.Key(), rev: e.Rev(), queue: queuePrefix, slot: slot})
		return
	}
	l.freeSlot(queuePrefix, slot)
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

func randomID() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func (l *Locker) track(lk *lock) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	l.holds[lk] = struct{}{}
	return true
}

func (l *Locker) untrack(lk *lock) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.holds, lk)
}

// Close releases every lock the Locker holds, ends every call in flight
// (a wait with ErrClosed) and revokes the Locker's shared leases. It
// returns within about 2s whatever is in flight, even with etcd
// unreachable: every call ends at once and gets at most that long (the
// bound of every cleanup) for its cleanup, and Close gives its releases
// and revokes one such bound, all at once. What it could not delete in
// time goes when its lease expires. Other calls made after Close return
// ErrClosed; a Release or Refresh of a lock it released returns
// ErrNotHeld. Close returns the first errors from releasing.
//
// Close is idempotent: a second call, or one made while the first is in
// progress, waits for the first to finish and returns nil.
func (l *Locker) Close() error {
	// Cancel first: every call in flight ends with it.
	l.cancel()
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		<-l.closeEnd
		return nil
	}
	l.closed = true
	defer close(l.closeEnd)
	holds := make([]*lock, 0, len(l.holds))
	for lk := range l.holds {
		holds = append(holds, lk)
	}
	shared := l.shared
	l.shared = nil
	l.mu.Unlock()

	ctx, cancel := etcderr.Cleanup(context.Background())
	defer cancel()
	var mu sync.Mutex
	var failed []error
	all(holds, func(lk *lock) {
		if err := lk.release(ctx); err != nil && !errors.Is(err, ErrNotHeld) {
			mu.Lock()
			failed = append(failed, err)
			mu.Unlock()
		}
	})
	// After the releases, so that no hold sees its lease go as a loss.
	all(slices.Collect(maps.Values(shared)), func(ls *lease.Lease) {
		// A lease lost already lost its holds with it: only a live one's
		// failed revoke is worth reporting.
		lost := ls.Err()
		err := ls.Revoke(ctx)
		if lost == nil && err != nil && !errors.Is(err, lease.ErrNotFound) {
			mu.Lock()
			failed = append(failed, err)
			mu.Unlock()
		}
	})
	l.wg.Wait()
	return errs.Join(failed...)
}

// all runs f on every item, a few at a time, and waits for them.
func all[T any](items []T, f func(T)) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	for _, it := range items {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			f(it)
		}()
	}
	wg.Wait()
}
