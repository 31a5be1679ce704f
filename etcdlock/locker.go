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

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/leasekit/leasekit/internal/errs"
	"github.com/leasekit/leasekit/internal/etcderr"
	"github.com/leasekit/leasekit/internal/keys"
	"github.com/leasekit/leasekit/internal/lease"
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
// the order they asked (FIFO); each watches only the keys right ahead of
// it.
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
	m, err := l.mutex(opts.Key)
	if err != nil {
		return nil, err
	}
	return l.acquire(ctx, m, opts, true)
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
	m, err := l.mutex(opts.Key)
	if err != nil {
		return nil, false, err
	}
	return l.try(ctx, m, opts)
}

// clientErr reports a closed etcd client, through which every call would
// only fail after clientv3's retries.
func (l *Locker) clientErr() error {
	if err := l.cli.Ctx().Err(); err != nil {
		return fmt.Errorf("etcd client closed: %w", err)
	}
	return nil
}

// call begins one of the Locker's calls to etcd, what it does named in
// errors ("inspect \"x\""), so that Close waits for it: it fails with
// ErrClosed after Close, and at once if the client is closed. done ends
// the call.
func (l *Locker) call(what string) (done func(), err error) {
	if err := l.enter(); err != nil {
		return nil, err
	}
	if err := l.clientErr(); err != nil {
		l.wg.Done()
		return nil, fmt.Errorf("etcdlock: %s: %w", what, err)
	}
	return l.wg.Done, nil
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
