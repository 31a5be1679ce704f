package ratelimit

import (
	"context"
	"fmt"
	"math"
	"time"

	"go.uber.org/zap"

	"github.com/leasekit/leasekit/internal/etcderr"
)

// OutagePolicy says what a Limiter does with a call that needs etcd while
// etcd is unreachable or refuses it. Set it with WithOutagePolicy.
//
// Only calls that need etcd are affected. A denial is normally answered
// from the cached bucket state without etcd, and so are calls served from
// tokens this instance already holds in a batch; both go on as usual
// during an outage.
//
// An outage starts when an etcd call made for a caller fails, or runs out
// of its call timeout (WithCallTimeout), while the caller's ctx is still
// alive. From then on calls do not wait for etcd: the policy decides at
// once, while a background probe reads etcd with a doubling delay from
// 100ms to 1s. The outage ends when a probe succeeds; the next call then
// uses etcd again.
type OutagePolicy int

const (
	// FailClosed refuses every call that needs etcd with an error wrapping
	// ErrUnavailable (Middleware answers 503). The limit holds through any
	// outage; the service does not. It is the default.
	FailClosed OutagePolicy = iota
	// FailOpen allows every call that needs etcd. The service stays up and
	// the limit is off for as long as the outage lasts.
	FailOpen
	// FailLocal allows each instance a share of the limit, from a bucket
	// in memory per key: Rate / N per Period with a burst of Burst / N
	// (rounded down, at least 1), where N is the number of live instances
	// this instance last counted. If N is right and all instances lose
	// etcd, the limit holds with at most one extra Burst when the outage
	// starts; an instance cut off alone adds at most its share to what the
	// others allow through etcd.
	//
	// To count, each instance keeps a key under the limiter's prefix on a
	// lease of its own (5s TTL, kept alive) and watches the others' keys.
	// A crashed instance is counted until its lease expires, which makes
	// the shares smaller, never larger. An instance that has never read the
	// count, such as one started during the outage, refuses like
	// FailClosed. A key served by fewer instances than are live gets less
	// than its limit during the outage.
	//
	// A key's local bucket starts from the last state of the shared bucket
	// this instance saw. What it allows is charged to the shared bucket
	// with the key's next write after the outage, up to emptying it, so
	// that the outage's events are not allowed a second time.
	FailLocal
)

// String returns "FailClosed", "FailOpen" or "FailLocal".
func (p OutagePolicy) String() string {
	switch p {
	case FailClosed:
		return "FailClosed"
	case FailOpen:
		return "FailOpen"
	case FailLocal:
		return "FailLocal"
	}
	return fmt.Sprintf("OutagePolicy(%d)", int(p))
}

// The background probe's delays while etcd is unreachable.
const (
	minProbe = 100 * time.Millisecond
	maxProbe = time.Second
)

// callCtx bounds one etcd call by the call timeout as well as ctx.
func (l *Limiter) callCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, l.cfg.timeout)
}

// failed records that etcd could not serve a call, and starts the probe if
// this is the start of an outage.
func (l *Limiter) failed(cause error) {
	if !l.down.CompareAndSwap(false, true) {
		return
	}
	l.lg.Warn("ratelimit: etcd unreachable; deciding by the outage policy until it answers again",
		zap.Stringer("policy", l.cfg.outage), zap.Error(cause))
	l.om.Unreachable(l.name, true)
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

// probe waits for outages and ends each one once a linearizable read of
// the stored limit succeeds, which needs a quorum. It runs until ctx ends.
func (l *Limiter) probe(ctx context.Context) {
	defer l.wg.Done()
	for {
		select {
		case <-l.kick:
		case <-ctx.Done():
			return
		}
		b := etcderr.Backoff{Min: minProbe, Max: maxProbe}
		for l.down.Load() {
			if b.Wait(ctx) != nil {
				return
			}
			cctx, cancel := l.callCtx(ctx)
			_, err := l.cli.Get(cctx, l.cfgKey)
			cancel()
			if err == nil {
				l.down.Store(false)
				l.lg.Info("ratelimit: etcd reachable again")
				l.om.Unreachable(l.name, false)
			}
		}
	}
}

// withoutEtcd decides, by the outage policy, a call for n events that
// would be allowed by the cached state but needs etcd, which cause kept
// from it. It runs with ks's semaphore held.
func (l *Limiter) withoutEtcd(ks *keyState, p *params, now int64, n int, cause error) (Result, error) {
	switch l.cfg.outage {
	case FailOpen:
		l.om.WithoutEtcd(l.name, OutcomeAllowed, n)
		r := ks.result(p, now, n)
		r.Degraded = true
		return r, nil
	case FailLocal:
		lp := l.share(p)
		if lp == nil {
			break
		}
		tat := ks.localTat()
		ok, newTat, wait := lp.take(tat, now, n)
		if !ok {
			l.om.WithoutEtcd(l.name, OutcomeDenied, n)
			return Result{
				Remaining:  int(max(0, lp.available(tat, now))),
				RetryAfter: time.Duration(wait),
				ResetAfter: time.Duration(max(0, tat-now)),
				Degraded:   true,
			}, nil
		}
		ks.local, ks.owed = newTat, ks.owed+int64(n)
		l.om.WithoutEtcd(l.name, OutcomeAllowed, n)
		return Result{
			Allowed:    n,
			Remaining:  int(max(0, lp.available(newTat, now))),
			ResetAfter: time.Duration(newTat - now),
			Degraded:   true,
		}, nil
	}
	l.om.WithoutEtcd(l.name, OutcomeRefused, n)
	return Result{}, fmt.Errorf("%w: %w", ErrUnavailable, cause)
}

// share returns this instance's share of p under FailLocal, or nil while
// the number of live instances is unknown. The share keeps p's tolerance
// (how far ahead of now a bucket's arrival time may run) and stretches the
// interval by the number of instances, so a bucket that is a fraction f
// empty under p is a fraction f empty under the share too: the shared
// arrival time carries over as it is.
func (l *Limiter) share(p *params) *params {
	n := l.live.Load()
	if n < 1 {
		return nil
	}
	iv := p.interval
	if iv > maxStoredTime/4/n {
		iv = maxStoredTime / 4
	} else {
		iv *= n
	}
	burst := int(min(p.tol/iv, math.MaxInt32))
	return &params{
		limit:    Limit{Rate: p.limit.Rate, Period: p.limit.Period, Burst: max(burst, 1)},
		interval: iv,
		tol:      max(p.tol, iv),
	}
}

// localTat returns the arrival time of ks's local bucket, starting it from
// the shared bucket's last known state.
func (ks *keyState) localTat() int64 {
	if !ks.localSet {
		ks.local, ks.localSet = ks.b.tat, true
	}
	return ks.local
}

// charge adds to tat, the arrival time about to be written, what ks's local
// bucket allowed while etcd was unreachable, up to emptying the bucket.
func (ks *keyState) charge(p *params, now, tat int64) int64 {
	if ks.owed == 0 {
		return tat
	}
	owed := min(ks.owed, p.tol/p.interval+1) * p.interval
	return max(tat, min(tat+owed, now+p.tol))
}

// written records that ks's bucket was written: what the local bucket
// allowed is now charged, and the local bucket starts afresh at the next
// outage.
func (ks *keyState) written() {
	ks.owed, ks.localSet = 0, false
}
