package ratelimit

import (
	"context"
	"fmt"
	"math"
	"sync/atomic"
	"time"
)

// InfDuration is what Reservation.Delay returns for a reservation that is
// not OK.
const InfDuration = time.Duration(math.MaxInt64)

// A Reservation holds events that a Limiter allowed to happen after a
// delay. Make one with Reserve or ReserveN; act after Delay, or Cancel.
// Its methods are safe for concurrent use.
type Reservation struct {
	ok       bool
	l        *Limiter
	key      string
	n        int
	act      int64 // limiter time at which the events may happen
	tat      int64 // the bucket's arrival time this reservation wrote; 0 if it wrote none
	limit    Limit // in force when reserved
	degraded bool  // made by the outage policy

	// canceled is read and set with the key's semaphore held, so that two
	// Cancels give the tokens back once.
	canceled atomic.Bool
}

// Reserve is shorthand for ReserveN(ctx, key, 1).
func (l *Limiter) Reserve(ctx context.Context, key string) (*Reservation, error) {
	return l.ReserveN(ctx, key, 1)
}

// ReserveN takes n tokens from key's bucket now, going into debt if the
// bucket holds fewer, and returns a Reservation that says how long the
// caller must wait before the n events may happen. Later calls for key,
// on every instance, see the debt. Use it to schedule events instead of
// blocking in Wait, or to wait with a timer of your own:
//
//	r, err := lim.ReserveN(ctx, key, n)
//	if err != nil {
//		return err
//	}
//	if !r.OK() {
//		return errTooLate // not before ctx's deadline; nothing was taken
//	}
//	time.Sleep(r.Delay())
//	act()
//
// If ctx has a deadline and the events could not happen before it,
// ReserveN takes nothing and returns a Reservation that is not OK, as
// x/time/rate's WaitN does. Without a deadline every reservation is OK.
// n must be between 1 and Burst, or ReserveN returns ErrInvalidN.
//
// A reservation is one compare-and-swap in etcd, in exact mode or not,
// unless this instance holds n tokens from a batch: then it uses them and
// has no delay. During an outage the outage policy applies as for AllowN:
// FailClosed returns ErrUnavailable, FailOpen an OK reservation with no
// delay, FailLocal a reservation on the local share.
//
// The limit holds for reservations acted on at their time. Events done
// later than Delay said can exceed it, since their tokens were counted as
// used at their time.
func (l *Limiter) ReserveN(ctx context.Context, key string, n int) (*Reservation, error) {
	if n < 1 {
		return nil, fmt.Errorf("%w: n=%d; want >= 1", ErrInvalidN, n)
	}
	cause, err := l.waitReady(ctx)
	if err != nil {
		return nil, err
	}
	ks, err := l.acquire(ctx, key)
	if err != nil {
		return nil, err
	}
	defer l.release(ks)
	ks.requested += int64(n)
	r, err := l.reserve(ctx, ks, key, n, cause)
	if err == nil && r.ok {
		l.m.Allowed(l.name, n)
	} else if err == nil {
		l.m.Denied(l.name, n)
	}
	return r, err
}

// reserve is ReserveN with ks's semaphore held.
func (l *Limiter) reserve(ctx context.Context, ks *keyState, key string, n int, cause error) (*Reservation, error) {
	var deadline time.Time
	if d, ok := ctx.Deadline(); ok {
		deadline = d
	}
	for {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("ratelimit: %w", err)
		}
		p := l.cur.Load()
		if n > p.limit.Burst {
			return nil, fmt.Errorf("%w: n=%d exceeds burst %d", ErrInvalidN, n, p.limit.Burst)
		}
		now := l.clock.now()
		ks.lastUse = now
		if ks.held > 0 && now >= ks.heldUntil {
			l.m.Held(l.name, -ks.held)
			ks.held = 0
		}
		r := &Reservation{ok: true, l: l, key: key, n: n, act: now, limit: p.limit}
		if ks.held >= n {
			ks.held -= n
			l.m.Held(l.name, -n)
			return r, nil
		}
		if cause == nil && l.down.Load() {
			cause = errDown
		}
		if cause != nil {
			return l.reserveWithoutEtcd(ks, r, p, now, deadline, cause)
		}
		tat, act := p.debt(ks.b.tat, now, n)
		if late(act-now, deadline) {
			return &Reservation{}, nil
		}
		done, err := l.write(ctx, ks, p, now, ks.charge(p, now, tat))
		if err != nil {
			if ctx.Err() != nil {
				return nil, fmt.Errorf("ratelimit: %w", ctx.Err())
			}
			l.failed(err)
			return l.reserveWithoutEtcd(ks, r, p, now, deadline, err)
		}
		if done {
			r.act, r.tat = act, tat
			return r, nil
		}
	}
}

// reserveWithoutEtcd makes r by the outage policy.
func (l *Limiter) reserveWithoutEtcd(ks *keyState, r *Reservation, p *params, now int64, deadline time.Time, cause error) (*Reservation, error) {
	r.degraded = true
	switch l.cfg.outage {
	case FailOpen:
		l.om.WithoutEtcd(l.name, OutcomeAllowed, r.n)
		return r, nil
	case FailLocal:
		lp := l.share(p)
		if lp == nil {
			break
		}
		tat, act := lp.debt(ks.localTat(), now, r.n)
		if late(act-now, deadline) {
			l.om.WithoutEtcd(l.name, OutcomeDenied, r.n)
			return &Reservation{}, nil
		}
		ks.local, ks.owed = tat, ks.owed+int64(r.n)
		l.om.WithoutEtcd(l.name, OutcomeAllowed, r.n)
		r.act = act
		return r, nil
	}
	l.om.WithoutEtcd(l.name, OutcomeRefused, r.n)
	return nil, fmt.Errorf("%w: %w", ErrUnavailable, cause)
}

// debt takes n tokens from a bucket with arrival time tat at now, into
// debt if need be, and returns the new arrival time and the time at which
// the n events conform to the limit.
func (p *params) debt(tat, now int64, n int) (newTat, act int64) {
	newTat = max(tat, now) + int64(n)*p.interval
	return newTat, max(now, newTat-p.tol)
}

// late reports whether a delay of d ns ends after deadline.
func late(d int64, deadline time.Time) bool {
	return !deadline.IsZero() && time.Duration(d) > time.Until(deadline)
}

// OK reports whether the limiter granted the events. A reservation that is
// not OK took nothing; its Delay is InfDuration and Cancel does nothing.
func (r *Reservation) OK() bool { return r.ok }

// Delay returns how long the holder must wait, from now on the limiter's
// clock (see WithClock), before the reserved events may happen: zero means
// at once. It is InfDuration if the reservation is not OK.
func (r *Reservation) Delay() time.Duration {
	if !r.ok {
		return InfDuration
	}
	return time.Duration(max(0, r.act-r.l.clock.now()))
}

// Cancel tells the limiter that the reserved events will not happen, and
// gives their tokens back to the shared bucket where the limit allows it:
//
//   - if the reservation's time to act has passed (Delay is zero and the
//     limiter's clock has moved since), the events are taken as done and
//     nothing is given back, as in golang.org/x/time/rate;
//   - otherwise the bucket's arrival time moves back by the n tokens'
//     worth, in one compare-and-swap, whatever others took since: the
//     reservations made after this one keep their times, which is safe
//     because they act no earlier than the tokens they now stand on;
//   - nothing is given back for a reservation served from a batch this
//     instance held, one made by the outage policy, one that is not OK,
//     one already cancelled, or if the limit changed since it was made.
//
// The tokens given back are usable at once through this instance and
// through any instance that reads the bucket afresh; an instance that
// cached the bucket before the cancel denies from that older, stricter
// state until its own reckoning lets it write again.
//
// Cancel returns an error, and gives nothing back, if etcd could not be
// reached in time or ctx ended; it may be called again then. It does not
// take part in the outage policy.
func (r *Reservation) Cancel(ctx context.Context) error {
	if !r.ok || r.degraded || r.tat == 0 {
		return nil
	}
	l := r.l
	if err := l.checkOpen(); err != nil {
		return err
	}
	ks, err := l.acquire(ctx, r.key)
	if err != nil {
		return err
	}
	defer l.release(ks)
	if r.canceled.Load() {
		return nil
	}
	for {
		now := l.clock.now()
		p := l.cur.Load()
		if r.act < now || p.limit != r.limit {
			r.canceled.Store(true)
			return nil
		}
		if ks.modRev == 0 || ks.b.tat < r.tat {
			// This instance forgot the key, or never knew it: read it.
			if err := l.read(ctx, ks); err != nil {
				return err
			}
			if ks.b.tat < r.tat { // reset by hand since
				r.canceled.Store(true)
				return nil
			}
		}
		done, err := l.write(ctx, ks, p, now, ks.charge(p, now, ks.b.tat-int64(r.n)*p.interval))
		if err != nil {
			return fmt.Errorf("ratelimit: cancel: %w", err)
		}
		if done {
			r.canceled.Store(true)
			return nil
		}
	}
}

// read loads ks's bucket from etcd, bounded by the call timeout.
func (l *Limiter) read(ctx context.Context, ks *keyState) error {
	cctx, cancel := l.callCtx(ctx)
	defer cancel()
	resp, err := l.cli.Get(cctx, ks.bucketKey)
	if err != nil {
		return fmt.Errorf("ratelimit: read %q: %w", ks.bucketKey, err)
	}
	l.load(ks, resp.Kvs)
	return nil
}
