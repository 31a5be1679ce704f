package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/leasekit/leasekit/internal/keys"
)

// Result is the outcome of one Allow call.
type Result struct {
	// Allowed is the number of events allowed: n, or 0 for a denial.
	Allowed int
	// Remaining is the number of events the bucket still allows now. In
	// batched mode it is this instance's estimate: the tokens it holds plus
	// what the shared bucket held when it last read it.
	Remaining int
	// RetryAfter is 0 when the call was allowed. After a denial it is
	// always positive: the time until a retry can succeed, as far as this
	// instance knows. Another instance may take the tokens first.
	RetryAfter time.Duration
	// ResetAfter is the time until the bucket is full again if nobody
	// takes from it.
	ResetAfter time.Duration
	// Degraded reports a decision made by the outage policy, FailOpen or
	// FailLocal, because etcd could not be used. Under FailLocal the other
	// fields describe this instance's local share of the bucket.
	Degraded bool
}

// Limiter enforces one Limit on every key of one name, shared by every
// Limiter in every process that uses the same etcd, prefix and name. Make
// one with New; the zero value is not usable. A Limiter is safe for
// concurrent use.
//
// Most callers want Allow, which answers at once, or Wait, which blocks
// until an event is allowed.
//
// Each key has its own bucket, stored in etcd as a GCRA theoretical
// arrival time and changed only by compare-and-swap transactions: one etcd
// write per allowed call, none for a denial. An instance that sees a key
// in heavy use takes tokens in batches and serves them from memory; see
// the package documentation for the guarantees of each mode.
//
// A Limiter runs a goroutine that reads and watches the stored limit, one
// that probes etcd during an outage and, under FailLocal, one that counts
// the live instances; Close stops them. Calls wait until the limit has
// been read once, for at most the call timeout (WithCallTimeout); if etcd
// definitely refuses that read (permission denied, failed authentication,
// an invalid argument) or does not answer in time, the outage policy
// decides the call.
//
// When etcd is unreachable or refuses, WithOutagePolicy decides: refuse
// with ErrUnavailable (FailClosed, the default), allow (FailOpen), or allow
// a share of the limit per instance (FailLocal). See OutagePolicy.
type Limiter struct {
	cli    *clientv3.Client
	name   string
	cfg    config
	base   string // prefix + encoded name + "/"
	cfgKey string
	def    *params // the limit given to New
	cur    atomic.Pointer[params]
	clock  *clock
	leases *leases
	lg     *zap.Logger
	m      Metrics
	om     OutageMetrics // m if it implements OutageMetrics

	down atomic.Bool   // etcd unreachable: decide by the outage policy
	kick chan struct{} // wakes probe at the start of an outage
	live atomic.Int64  // live instances counted under FailLocal; 0 unknown

	hdr atomic.Pointer[policyHeader] // Middleware's header values, cached

	limitMu  sync.Mutex
	limitRev int64 // etcd revision of the limit in force; 0 for New's

	ready     chan struct{} // closed once the stored limit has been read
	readyOnce sync.Once

	// refusal is etcd's definite refusal of the last read of the stored
	// limit before ready, or nil; refused is closed while it is set.
	refMu   sync.Mutex
	refusal error
	refused chan struct{}

	closed    chan struct{}
	closeOnce sync.Once
	cancel    context.CancelFunc
	done      chan struct{}  // closed when run returns
	wg        sync.WaitGroup // probe and register

	mu   sync.Mutex
	keys map[string]*keyState
}

// keyState is what one instance knows about one key.
type keyState struct {
	bucketKey string
	sem       chan struct{} // one call per key and instance talks to etcd at a time
	refs      int           // callers holding or waiting for sem; guarded by Limiter.mu

	// Guarded by sem, or by Limiter.mu when refs is 0.
	modRev    int64  // ModRevision of b in etcd; 0 for absent (or assumed absent)
	b         bucket // last state read or written: others only ever move tat forward
	held      int    // tokens taken in a batch and not yet used
	heldUntil int64  // limiter time at which held tokens expire
	requested int64  // tokens asked for since since, allowed or not
	since     int64  // start of the current demand sample; 0 before the first
	demand    float64
	lastUse   int64

	// The local bucket of FailLocal, used while etcd is unreachable.
	local    int64 // its arrival time
	localSet bool  // local is set for the current outage
	owed     int64 // tokens it allowed, to charge to the shared bucket
}

// New returns a Limiter that enforces limit on the keys of name, unless a
// limit stored in etcd with SetLimit overrides it. It validates its
// arguments and does not contact etcd: the first call does.
func New(cli *clientv3.Client, name string, limit Limit, opts ...Option) (*Limiter, error) {
	if cli == nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidOption, ErrNilClient)
	}
	if err := checkString(name); err != nil {
		return nil, fmt.Errorf("%w %q: %v", ErrInvalidName, name, err)
	}
	p, err := newParams(limit)
	if err != nil {
		return nil, err
	}
	cfg := defaultConfig()
	for _, o := range opts {
		if o == nil {
			return nil, fmt.Errorf("%w: nil Option", ErrInvalidOption)
		}
		o.apply(&cfg)
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	prefix, err := keys.Prefix(cfg.prefix)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidOption, err)
	}
	enc, _ := keys.Encode(name)
	ctx, cancel := context.WithCancel(context.Background())
	l := &Limiter{
		cli:     cli,
		name:    name,
		cfg:     cfg,
		base:    prefix + enc + "/",
		def:     p,
		clock:   newClock(cfg.clock),
		leases:  newLeases(cli),
		lg:      cfg.logger.With(zap.String("limiter", name)),
		m:       cfg.metrics,
		om:      nopOutageMetrics{},
		kick:    make(chan struct{}, 1),
		ready:   make(chan struct{}),
		refused: make(chan struct{}),
		closed:  make(chan struct{}),
		cancel:  cancel,
		done:    make(chan struct{}),
		keys:    make(map[string]*keyState),
	}
	if om, ok := cfg.metrics.(OutageMetrics); ok {
		l.om = om
	}
	l.cfgKey = l.base + "limit"
	l.cur.Store(p)
	go l.run(ctx)
	l.wg.Add(1)
	go l.probe(ctx)
	if cfg.outage == FailLocal {
		l.wg.Add(1)
		go l.register(ctx)
	}
	return l, nil
}

// MaxNameLen is the longest limiter name or key, in bytes. Every
// leasekit package names its limit so.
const MaxNameLen = keys.MaxNameLen

func checkString(s string) error {
	switch {
	case s == "":
		return errors.New("empty")
	case len(s) > MaxNameLen:
		return fmt.Errorf("%d bytes; the limit is %d", len(s), MaxNameLen)
	case !utf8.ValidString(s):
		return errors.New("not valid UTF-8")
	}
	return nil
}

// Name returns the name given to New.
func (l *Limiter) Name() string { return l.name }

// Limit returns the limit in force: the one stored with SetLimit, or else
// the one given to New.
func (l *Limiter) Limit() Limit { return l.cur.Load().limit }

// Allow is shorthand for AllowN(ctx, key, 1).
func (l *Limiter) Allow(ctx context.Context, key string) (Result, error) {
	return l.AllowN(ctx, key, 1)
}

// AllowN reports whether n events may happen now for key, and takes them
// from key's bucket if so. It never waits for tokens, only for etcd, and
// for etcd at most the call timeout (WithCallTimeout) per call.
//
// n must be between 1 and Burst, or AllowN returns ErrInvalidN. An error
// means that nothing was allowed; the tokens may still have been taken if
// etcd committed a write whose reply was lost, which errs on the strict
// side. Until the stored limit has been read once, AllowN waits for it.
//
// When etcd is unreachable or refuses (rpctypes.ErrPermissionDenied, an
// auth failure, an invalid argument), the outage policy decides: under
// FailClosed, the default, AllowN returns at once with an error wrapping
// both ErrUnavailable and etcd's error, checkable with errors.Is.
func (l *Limiter) AllowN(ctx context.Context, key string, n int) (Result, error) {
	if n < 1 {
		return Result{}, fmt.Errorf("%w: n=%d; want >= 1", ErrInvalidN, n)
	}
	cause, err := l.waitReady(ctx)
	if err != nil {
		return Result{}, err
	}
	ks, err := l.acquire(ctx, key)
	if err != nil {
		return Result{}, err
	}
	defer l.release(ks)
	ks.requested += int64(n)
	r, err := l.allow(ctx, ks, n, cause)
	switch {
	case err != nil:
	case r.Allowed > 0:
		l.m.Allowed(l.name, n)
		if int64(r.Remaining)*10 < int64(l.cur.Load().limit.Burst) {
			l.m.NearLimit(l.name)
		}
	default:
		l.m.Denied(l.name, n)
	}
	return r, err
}

// Wait is shorthand for WaitN(ctx, key, 1).
func (l *Limiter) Wait(ctx context.Context, key string) error {
	return l.WaitN(ctx, key, 1)
}

// WaitN blocks until n events are allowed for key and takes them, or until
// ctx is done. It retries after each denial's RetryAfter, so waiters are
// not served in order of arrival. n must be between 1 and Burst, or WaitN
// returns ErrInvalidN at once. An error wraps ctx.Err() if ctx ended
// first.
func (l *Limiter) WaitN(ctx context.Context, key string, n int) error {
	var t *time.Timer
	for {
		r, err := l.AllowN(ctx, key, n)
		if err != nil {
			return err
		}
		if r.Allowed > 0 {
			return nil
		}
		if t == nil {
			t = time.NewTimer(r.RetryAfter)
			defer t.Stop()
		} else {
			t.Reset(r.RetryAfter)
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return fmt.Errorf("ratelimit: wait for %q: %w", key, ctx.Err())
		case <-l.closed:
			return ErrClosed
		}
	}
}

// SetLimit stores lim in etcd as the limit of name, for every Limiter with
// this prefix and name. It is in force here when SetLimit returns, and in
// other instances as soon as their watch delivers it, normally within
// milliseconds. Deleting the key (see the package documentation) restores
// each instance's own limit given to New.
//
// Buckets keep their state across a change: time owed under the old limit
// is still owed, so a smaller limit may deny calls until that debt is
// repaid.
func (l *Limiter) SetLimit(ctx context.Context, lim Limit) error {
	p, err := newParams(lim)
	if err != nil {
		return err
	}
	if err := l.checkOpen(); err != nil {
		return err
	}
	resp, err := l.cli.Put(ctx, l.cfgKey, marshalLimit(lim))
	if err != nil {
		return fmt.Errorf("ratelimit: set limit: %w", err)
	}
	l.applyLimit(p, resp.Header.Revision)
	return nil
}

// Close stops the limiter's goroutines. Calls made after Close return
// ErrClosed. Close leaves the buckets in etcd alone, so they neither
// refill nor vanish early because an instance stopped; under FailLocal it
// revokes this instance's registration, waiting for etcd at most 2s.
//
// Close is idempotent: a second call, or one made while the first is in
// progress, waits for the first to finish and returns nil.
func (l *Limiter) Close() error {
	l.closeOnce.Do(func() {
		close(l.closed)
		l.cancel()
	})
	<-l.done
	l.wg.Wait()
	return nil
}

func (l *Limiter) checkOpen() error {
	select {
	case <-l.closed:
		return ErrClosed
	default:
		return nil
	}
}

// waitReady waits until the stored limit, if any, is known, so that a new
// instance never enforces a stale limit. It waits at most the call
// timeout, and not at all during an outage or after etcd refused the read:
// then it returns the cause, for the outage policy to decide with the
// limit given to New. err is ErrClosed or the caller's ctx.Err().
func (l *Limiter) waitReady(ctx context.Context) (cause, err error) {
	if err := l.checkOpen(); err != nil {
		return nil, err
	}
	select {
	case <-l.ready:
		return nil, nil
	default:
	}
	l.refMu.Lock()
	refused := l.refused
	l.refMu.Unlock()
	refusal := func() (cause, err error) {
		select {
		case <-l.ready:
			return nil, nil
		default:
		}
		l.refMu.Lock()
		err = l.refusal
		l.refMu.Unlock()
		if err == nil { // cleared by a read that succeeded just now
			return nil, nil
		}
		cause = fmt.Errorf("ratelimit: load limit: %w", err)
		l.failed(cause)
		return cause, nil
	}
	select {
	case <-refused:
		return refusal()
	default:
	}
	if l.down.Load() {
		return errNotLoaded, nil
	}
	t := time.NewTimer(l.cfg.timeout)
	defer t.Stop()
	select {
	case <-l.ready:
		return nil, nil
	case <-refused:
		return refusal()
	case <-t.C:
		cause := fmt.Errorf("%w within %v", errNotLoaded, l.cfg.timeout)
		l.failed(cause)
		return cause, nil
	case <-l.closed:
		return nil, ErrClosed
	case <-ctx.Done():
		return nil, fmt.Errorf("ratelimit: load limit: %w", ctx.Err())
	}
}

// errNotLoaded is the cause of an outage decision made before the stored
// limit could be read.
var errNotLoaded = errors.New("ratelimit: stored limit not read")

// setRefusal records etcd's refusal of the read of the stored limit, or
// clears it for nil, and wakes the calls waiting in waitReady.
func (l *Limiter) setRefusal(err error) {
	l.refMu.Lock()
	defer l.refMu.Unlock()
	switch {
	case err != nil && l.refusal == nil:
		close(l.refused)
	case err == nil && l.refusal != nil:
		l.refused = make(chan struct{})
	}
	l.refusal = err
}

// acquire returns key's state with its semaphore held.
func (l *Limiter) acquire(ctx context.Context, key string) (*keyState, error) {
	l.mu.Lock()
	ks := l.keys[key]
	if ks == nil {
		if err := checkString(key); err != nil {
			l.mu.Unlock()
			return nil, fmt.Errorf("%w %q: %v", ErrInvalidKey, key, err)
		}
		enc, _ := keys.Encode(key)
		ks = &keyState{bucketKey: l.base + "b/" + enc, sem: make(chan struct{}, 1)}
		l.keys[key] = ks
	}
	ks.refs++
	l.mu.Unlock()
	select {
	case ks.sem <- struct{}{}:
		return ks, nil
	case <-ctx.Done():
		l.mu.Lock()
		ks.refs--
		l.mu.Unlock()
		return nil, fmt.Errorf("ratelimit: %w", ctx.Err())
	}
}

func (l *Limiter) release(ks *keyState) {
	<-ks.sem
	l.mu.Lock()
	ks.refs--
	l.mu.Unlock()
}

// allow decides one call with ks's semaphore held. It serves the call from
// tokens held in a batch if it can; otherwise it takes a batch (or, in
// exact mode, just n) from the bucket by compare-and-swap, retrying with
// the fresh state after a conflict. A denial comes from the cached state
// and writes nothing: others only ever move a bucket's arrival time
// forward, so a bucket that was short of tokens is still short. A call
// that needs etcd while it is unreachable (cause != nil, or l.down, or a
// failed write) is decided by the outage policy.
func (l *Limiter) allow(ctx context.Context, ks *keyState, n int, cause error) (Result, error) {
	for {
		if err := ctx.Err(); err != nil {
			return Result{}, fmt.Errorf("ratelimit: %w", err)
		}
		p := l.cur.Load()
		if n > p.limit.Burst {
			return Result{}, fmt.Errorf("%w: n=%d exceeds burst %d", ErrInvalidN, n, p.limit.Burst)
		}
		now := l.clock.now()
		ks.lastUse = now
		if ks.held > 0 && now >= ks.heldUntil {
			l.m.Held(l.name, -ks.held)
			ks.held = 0
		}
		if ks.held >= n {
			ks.held -= n
			l.m.Held(l.name, -n)
			return ks.result(p, now, n), nil
		}
		if cause == nil && l.down.Load() {
			cause = errDown
		}
		need, want := n-ks.held, n
		if cause == nil { // no batches without etcd
			want = ks.batchSize(p, now, need, l.cfg.window)
		}
		ok, tat, wait := p.take(ks.b.tat, now, want)
		if !ok {
			r := ks.result(p, now, 0)
			r.RetryAfter = time.Duration(wait)
			return r, nil
		}
		if cause != nil {
			return l.withoutEtcd(ks, p, now, n, cause)
		}
		done, err := l.write(ctx, ks, p, now, ks.charge(p, now, tat))
		if err != nil {
			if ctx.Err() != nil {
				return Result{}, fmt.Errorf("ratelimit: %w", ctx.Err())
			}
			l.failed(err)
			return l.withoutEtcd(ks, p, now, n, err)
		}
		if !done {
			continue
		}
		if ks.held > 0 {
			l.m.Held(l.name, -ks.held)
		}
		ks.held, ks.heldUntil = want-need, now+int64(l.cfg.window)
		if ks.held > 0 {
			l.m.Held(l.name, ks.held)
		}
		return ks.result(p, now, n), nil
	}
}

// errDown is the cause of decisions made during an outage without trying
// etcd again.
var errDown = errors.New("ratelimit: etcd unreachable; waiting for the probe to reach it")

// write stores tat as ks's bucket if the bucket has not changed since ks
// last saw it, in one compare-and-swap bounded by the call timeout. done
// is false after a lost race, with the fresh state loaded, and after the
// lease was found gone; the caller decides again from ks. An error is
// etcd's or ctx's.
func (l *Limiter) write(ctx context.Context, ks *keyState, p *params, now, tat int64) (done bool, err error) {
	cctx, cancel := l.callCtx(ctx)
	defer cancel()
	lid, err := l.leases.get(cctx, time.Duration(tat-now), time.Duration(p.tol))
	if err != nil {
		return false, err
	}
	b := bucket{tat: tat, now: now}
	resp, err := l.cli.Txn(cctx).
		If(clientv3.Compare(clientv3.ModRevision(ks.bucketKey), "=", ks.modRev)).
		Then(clientv3.OpPut(ks.bucketKey, b.encode(), clientv3.WithLease(lid))).
		Else(clientv3.OpGet(ks.bucketKey)).
		Commit()
	if err != nil {
		if errors.Is(err, rpctypes.ErrLeaseNotFound) {
			return false, l.leases.drop(cctx, lid)
		}
		return false, fmt.Errorf("ratelimit: update %q: %w", ks.bucketKey, err)
	}
	if !resp.Succeeded {
		l.m.Conflict(l.name)
		l.load(ks, resp.Responses[0].GetResponseRange().Kvs)
		return false, nil
	}
	ks.modRev, ks.b = resp.Header.Revision, b
	ks.written()
	return true, nil
}

// load caches the bucket state read after a lost compare-and-swap.
func (l *Limiter) load(ks *keyState, kvs []*mvccKV) {
	if len(kvs) == 0 {
		ks.modRev, ks.b = 0, bucket{}
		return
	}
	kv := kvs[0]
	b, err := decodeBucket(kv.Value)
	if err != nil {
		// Not written by this package: count it as a full bucket and let
		// the next write replace it.
		l.lg.Warn("ratelimit: ignoring malformed bucket", zap.String("key", string(kv.Key)), zap.ByteString("value", kv.Value))
		b = bucket{}
	}
	ks.modRev, ks.b = kv.ModRevision, b
	l.clock.observe(b.now)
}

// result describes the bucket after a call that allowed n events (0 for a
// denial, whose RetryAfter the caller sets).
func (ks *keyState) result(p *params, now int64, n int) Result {
	rem := int64(ks.held) + max(0, p.available(ks.b.tat, now))
	return Result{
		Allowed:    n,
		Remaining:  int(min(rem, int64(p.limit.Burst))),
		ResetAfter: time.Duration(max(0, ks.b.tat-now)),
	}
}

// batchSize returns how many tokens to take from the bucket when this
// instance needs need more: need itself in exact mode, or what the key's
// recent demand here uses up in one batch window, capped at what the full
// rate produces in a window. Demand is the rate of tokens asked for here,
// allowed or not, sampled over at least half a window. Counting denied
// calls matters: sized by what it was allowed, an instance that lost a few
// races would ask for ever smaller batches, and small batches win races, so
// every batch would shrink towards one token.
func (ks *keyState) batchSize(p *params, now int64, need int, window time.Duration) int {
	if window <= 0 {
		return need
	}
	el := now - ks.since
	switch {
	case ks.since == 0:
		ks.since = now
	case el > 4*int64(window):
		ks.demand = float64(ks.requested) * 1e9 / float64(el)
		ks.requested, ks.since = 0, now
	case el >= int64(window)/2:
		ks.demand = (ks.demand + float64(ks.requested)*1e9/float64(el)) / 2
		ks.requested, ks.since = 0, now
	}
	want := min(int(ks.demand*window.Seconds()+0.999), p.batchCap(window))
	if want < 2 {
		return need
	}
	return max(want, need)
}
