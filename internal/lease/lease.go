// Package lease is the one lease type under leasekit's locks and
// elections: it grants an etcd lease, keeps it alive (always, for a
// while, or once), counts it lost at a client-side deadline that fires
// before etcd can expire it, so that a holder learns of a loss before
// anyone else can take what the lease protected, and revokes it. Err says
// why a lease ended; Revoke's result says what etcd did.
//
// etcd starts a lease's TTL when the server receives a grant or keepalive.
// The client sent it earlier, so "send time + granted TTL" is a deadline the
// server cannot beat; Done fires a margin before it. etcd's own
// Session.Done instead counts from when the response arrived, which can be
// after the server's clock started.
package lease

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/leasekit/leasekit/internal/etcderr"
)

// Errors a Lease ends with, reported by Err.
var (
	// ErrExpired means the client-side deadline passed without a successful
	// keepalive: etcd may expire the lease at any moment.
	ErrExpired = errors.New("lease deadline passed")
	// ErrNotFound means etcd no longer has the lease: it expired or was
	// revoked.
	ErrNotFound = errors.New("lease not found")
	// ErrRevoked means the lease was revoked through this Lease.
	ErrRevoked = errors.New("lease revoked")
)

// Margin is how long before "send time + TTL" a lease counts as lost. It
// covers the holder's reaction time and clocks that run at slightly
// different rates: a tenth of the TTL, at least 50ms and at most 1s.
func Margin(ttl time.Duration) time.Duration {
	return min(max(ttl/10, 50*time.Millisecond), time.Second)
}

// Seconds rounds d up to whole seconds, etcd's unit for TTLs.
func Seconds(d time.Duration) int64 {
	return int64(math.Ceil(d.Seconds()))
}

// Lease is a granted etcd lease. With keepalive on, a goroutine refreshes it
// every third of its TTL until Revoke, Close or loss.
type Lease struct {
	cli       *clientv3.Client
	id        clientv3.LeaseID
	ttl       time.Duration
	keepalive bool
	lg        *zap.Logger

	ctx    context.Context // cancelled when the lease ends
	cancel context.CancelFunc
	wg     sync.WaitGroup // the keepalive goroutines
	// revoked is closed when the revoke that follows a lapsed deadline
	// has returned, with its outcome in lapseRevoke; nil if there is none.
	revoked     chan struct{}
	lapseRevoke error

	mu       sync.Mutex
	deadline time.Time
	err      error
	timer    *time.Timer
	done     chan struct{}
}

// Grant asks etcd for a lease of at least ttl, rounded up to whole seconds.
// etcd raises TTLs below its minimum silently; TTL reports what was granted
// and a raise is logged at warn level.
func Grant(ctx context.Context, cli *clientv3.Client, ttl time.Duration, keepalive bool, lg *zap.Logger) (*Lease, error) {
	want := Seconds(ttl)
	sent := time.Now()
	resp, err := cli.Grant(ctx, want)
	if err != nil {
		return nil, err
	}
	granted := time.Duration(resp.TTL) * time.Second
	if resp.TTL > want {
		lg.Warn("etcd raised the lease TTL to its minimum",
			zap.Duration("requested", ttl), zap.Duration("granted", granted))
	}
	l := &Lease{
		cli:       cli,
		id:        resp.ID,
		ttl:       granted,
		keepalive: keepalive,
		lg:        lg,
		done:      make(chan struct{}),
	}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	l.mu.Lock()
	l.deadline = sent.Add(granted - Margin(granted))
	l.timer = time.AfterFunc(time.Until(l.deadline), l.checkDeadline)
	l.mu.Unlock()
	if keepalive {
		l.wg.Add(1)
		go l.keepAlive(nil)
	}
	return l, nil
}

// ID returns the etcd lease ID.
func (l *Lease) ID() clientv3.LeaseID { return l.id }

// TTL returns the TTL etcd granted.
func (l *Lease) TTL() time.Duration { return l.ttl }

// KeepsAlive reports whether a goroutine refreshes the lease.
func (l *Lease) KeepsAlive() bool { return l.keepalive }

// Deadline returns the time at which the lease counts as lost unless it is
// refreshed first.
func (l *Lease) Deadline() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.deadline
}

// ExpiresAt returns the earliest time etcd could expire the lease: the
// deadline plus the margin.
func (l *Lease) ExpiresAt() time.Time { return l.Deadline().Add(Margin(l.ttl)) }

// Done is closed when the lease is lost, revoked or closed.
func (l *Lease) Done() <-chan struct{} { return l.done }

// Context returns a context that ends when Done is closed.
func (l *Lease) Context() context.Context { return l.ctx }

// Err returns why Done was closed, or nil while it is open.
func (l *Lease) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// Alive reports whether the lease is neither lost nor ended.
func (l *Lease) Alive() bool {
	select {
	case <-l.done:
		return false
	default:
		return true
	}
}

// end closes Done with err unless it is already closed. It reports whether
// this call closed it.
func (l *Lease) end(err error) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		return false
	}
	l.err = err
	l.timer.Stop()
	close(l.done)
	l.cancel()
	if errors.Is(err, ErrExpired) && l.cli.Ctx().Err() == nil {
		// The client gave up on the lease, but etcd may still have it. Try
		// once to revoke it, so that its keys do not block others until
		// etcd expires them. Set under mu, so Close waits for it.
		l.revoked = make(chan struct{})
		go func() {
			defer close(l.revoked)
			ctx, cancel := etcderr.Cleanup(context.Background())
			defer cancel()
			l.lapseRevoke = l.revoke(ctx)
		}()
	}
	return true
}

func (l *Lease) checkDeadline() {
	l.mu.Lock()
	late := !time.Now().Before(l.deadline)
	l.mu.Unlock()
	if late && l.end(ErrExpired) {
		l.lg.Warn("lease deadline passed without a keepalive", zap.Int64("lease", int64(l.id)))
	}
}

// Gone ends the lease with ErrNotFound: for a caller that learnt from etcd
// that the lease no longer exists.
func (l *Lease) Gone() { l.end(ErrNotFound) }

// KeepAliveOnce refreshes the lease now and moves the deadline on. The
// call is bounded by the deadline: an answer that comes after it cannot
// undo the loss Done has reported. Once the lease has ended, it returns
// why (ErrExpired, ErrNotFound or ErrRevoked).
func (l *Lease) KeepAliveOnce(ctx context.Context) error {
	if !l.Alive() {
		return l.Err()
	}
	ctx, cancel := context.WithDeadline(ctx, l.Deadline())
	defer cancel()
	sent := time.Now()
	resp, err := l.cli.KeepAliveOnce(clientv3.WithRequireLeader(ctx), l.id)
	if errors.Is(err, rpctypes.ErrAuthOldRevision) || errors.Is(err, rpctypes.ErrInvalidAuthToken) {
		// clientv3 renews an auth token only on unary calls; a change of
		// users or roles would fail every keepalive stream until some
		// unary call happens. Make one, then try again.
		if _, terr := l.cli.TimeToLive(ctx, l.id); terr == nil {
			sent = time.Now()
			resp, err = l.cli.KeepAliveOnce(clientv3.WithRequireLeader(ctx), l.id)
		}
	}
	switch {
	case errors.Is(err, rpctypes.ErrLeaseNotFound):
		l.end(ErrNotFound)
		return ErrNotFound
	case err == nil:
		l.extend(sent, time.Duration(resp.TTL)*time.Second)
	}
	// The deadline's timer may not have run yet: do its work here, so that
	// a call cut short by the deadline reports the loss.
	l.checkDeadline()
	if lost := l.Err(); lost != nil {
		return lost
	}
	return err
}

func (l *Lease) extend(sent time.Time, ttl time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil || !time.Now().Before(l.deadline) {
		return // too late: the lease counts as lost already
	}
	if d := sent.Add(ttl - Margin(ttl)); d.After(l.deadline) {
		l.deadline = d
		l.timer.Reset(time.Until(d))
	}
}

// KeepAliveWhile keeps a lease granted without keepalive alive until stop
// is called: for a hold whose TTL should run from when it is granted, not
// from when it started to wait. stop waits for the keepalive goroutine.
func (l *Lease) KeepAliveWhile() (stop func()) {
	done, exited := make(chan struct{}), make(chan struct{})
	l.wg.Add(1)
	go func() {
		defer close(exited)
		l.keepAlive(done)
	}()
	var once sync.Once
	return func() {
		once.Do(func() { close(done) })
		<-exited
	}
}

// keepAlive refreshes the lease every third of its TTL until the lease
// ends or stop, if not nil, is closed.
func (l *Lease) keepAlive(stop <-chan struct{}) {
	defer l.wg.Done()
	interval := l.ttl / 3
	t := time.NewTimer(interval)
	defer t.Stop()
	for {
		select {
		case <-l.ctx.Done():
			return
		case <-stop:
			return
		case <-t.C:
		}
		// Bound each attempt by the time left, so a hung call cannot
		// outlive the deadline it is meant to move.
		ctx, cancel := context.WithDeadline(l.ctx, l.Deadline())
		err := l.KeepAliveOnce(ctx)
		cancel()
		next := interval
		if err != nil && l.Alive() {
			// Try again soon: the deadline is what decides loss.
			l.lg.Debug("lease keepalive failed", zap.Int64("lease", int64(l.id)), zap.Error(err))
			next = min(interval, 100*time.Millisecond)
		}
		t.Reset(next)
	}
}

// Revoke ends the lease and has etcd revoke it, which deletes every key
// attached to it. Its outcome is what etcd did, whatever ended the lease
// before (Err says that): nil if etcd revoked the lease, now or in the
// revoke a lapsed deadline started; ErrNotFound if etcd no longer had it;
// otherwise the error, and etcd may still have the lease, which then
// expires after its TTL, as nothing renews it any more. A revoke that a
// lapsed deadline started and that failed is tried again with ctx.
func (l *Lease) Revoke(ctx context.Context) error {
	l.end(ErrRevoked)
	l.wg.Wait()
	if errors.Is(l.Err(), ErrNotFound) {
		return ErrNotFound // etcd said so
	}
	if bg := l.lapsed(); bg != nil {
		select {
		case <-bg:
			if err := l.lapseRevoke; err == nil || errors.Is(err, ErrNotFound) {
				return err
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return l.revoke(ctx)
}

// RevokeDetached is Revoke with a context of its own, bounded by
// etcderr.CleanupTimeout: for a caller whose own context may be gone.
func (l *Lease) RevokeDetached() error {
	ctx, cancel := etcderr.Cleanup(context.Background())
	defer cancel()
	return l.Revoke(ctx)
}

// revoke asks etcd to revoke the lease.
func (l *Lease) revoke(ctx context.Context) error {
	if err := l.cli.Ctx().Err(); err != nil {
		return fmt.Errorf("etcd client closed: %w", err)
	}
	_, err := l.cli.Revoke(ctx, l.id)
	if errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return ErrNotFound
	}
	return err
}

// lapsed returns the channel closed when the revoke after a lapsed
// deadline returns, or nil if there is none.
func (l *Lease) lapsed() chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.revoked
}

// Close stops the keepalive goroutine without revoking: the lease expires
// on etcd after its TTL. It waits for a revoke a lapsed deadline started,
// which is bounded.
func (l *Lease) Close() {
	l.end(ErrRevoked)
	l.wg.Wait()
	if bg := l.lapsed(); bg != nil {
		<-bg
	}
}
