package etcdlock

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/leasekit/leasekit/internal/lease"
	"github.com/leasekit/leasekit/internal/queue"
)

// Errors of Semaphore, checked with errors.Is.
var (
	// ErrInvalidLimit is returned by Locker.Semaphore for a limit below 1
	// or above MaxSemaphoreLimit.
	ErrInvalidLimit = errors.New("etcdlock: invalid semaphore limit")
	// ErrLimitMismatch is returned by Acquire when the semaphore's users
	// disagree on its limit: etcd has another one for the name.
	ErrLimitMismatch = errors.New("etcdlock: semaphore limit mismatch")
)

// MaxSemaphoreLimit is the largest limit a Semaphore takes. A waiter
// watches the limit+1 keys nearest ahead of it, so the limit sets the cost
// of every wait.
const MaxSemaphoreLimit = 1024

// Semaphore hands out up to a fixed number of permits for one name at a
// time, across every process that uses the name. Waiters are served in the
// order they asked (FIFO). A permit is a Lock: it lives on its holder's
// lease, so a holder that crashes or is cut off frees its permit when the
// lease expires, and it has a fencing token, Done and Guard like a mutex's
// hold. Tokens increase in queue order. Up to the limit hold at once, so a
// token orders permits rather than excluding their holders from each
// other; Guard checks only that this permit is still held.
//
// Every user of a name must agree on the limit while the name is in use.
// An acquisition that finds nobody holding or waiting stores its limit in
// etcd, and every later one checks it in the same transaction that queues
// it: one that disagrees gets ErrLimitMismatch and changes nothing. The
// limit binds for as long as anyone holds or waits, even after the lease
// it was stored with is gone, and no longer: once the last permit and
// waiter are gone, the next acquisition stores its own. So to change a
// limit, let every permit of the old one go; two users that disagree are
// told so only when their uses overlap.
//
// A Semaphore is safe for concurrent use; it is a name, a limit and a
// Locker, and holds nothing by itself. Make one with Locker.Semaphore.
type Semaphore struct {
	l      *Locker
	permit permit
}

// Semaphore returns the semaphore of the given name, which admits n
// holders at a time. It checks its arguments and touches nothing in etcd.
// Semaphores live apart from mutexes: the semaphore "a" and the lock "a"
// are unrelated.
func (l *Locker) Semaphore(name string, n int) (*Semaphore, error) {
	if n < 1 || n > MaxSemaphoreLimit {
		return nil, fmt.Errorf("%w: %d is not in [1, %d]", ErrInvalidLimit, n, MaxSemaphoreLimit)
	}
	base, err := l.shapeBase(semSegment, name)
	if err != nil {
		return nil, err
	}
	q := base + "q/"
	return &Semaphore{l: l, permit: permit{
		plain: plain{kind: "semaphore", name: name, q: queue.New(l.cli, q, queue.Rule{N: n}), keys: q},
		cli:   l.cli, n: n, limit: strconv.Itoa(n), nKey: base + "n",
	}}, nil
}

// Name returns the semaphore's name.
func (s *Semaphore) Name() string { return s.permit.name }

// Limit returns how many holders the semaphore admits at a time.
func (s *Semaphore) Limit() int { return s.permit.n }

// Acquire is shorthand for AcquireWithOptions(ctx, LockOptions{TTL: ttl}):
// it waits for a permit and returns it held. Without a Refresh the permit
// expires after ttl (rounded up to whole seconds, and at least etcd's
// minimum). Release it to let the next waiter in.
func (s *Semaphore) Acquire(ctx context.Context, ttl time.Duration) (Lock, error) {
	return s.AcquireWithOptions(ctx, LockOptions{TTL: ttl})
}

// AcquireWithOptions waits for a permit as opts describe; opts.Key must be
// empty or the semaphore's name. If ctx ends or opts.Timeout passes first,
// the wait leaves the queue and the error wraps the context's error.
func (s *Semaphore) AcquireWithOptions(ctx context.Context, opts LockOptions) (Lock, error) {
	return s.l.acquire(ctx, s.permit, opts, true)
}

// TryAcquire takes a permit if one is free and nobody waits, and returns
// (nil, false, nil) otherwise. A TryAcquire that finds no permit free
// writes nothing to etcd.
func (s *Semaphore) TryAcquire(ctx context.Context, ttl time.Duration) (Lock, bool, error) {
	return s.l.try(ctx, s.permit, LockOptions{TTL: ttl})
}

// TryAcquireWithOptions is TryAcquire with the options of LockOptions,
// AutoRefresh among them; opts.Key must be empty or the semaphore's
// name, and Timeout and RetryInterval do not apply. It takes a permit if
// one is free and nobody waits, and returns (nil, false, nil) otherwise,
// writing nothing to etcd.
func (s *Semaphore) TryAcquireWithOptions(ctx context.Context, opts LockOptions) (Lock, bool, error) {
	return s.l.try(ctx, s.permit, opts)
}

// permit is the shape of a semaphore's hold: a plain one whose join also
// checks the limit every user of the name must agree on, and whose key
// names the limit.
type permit struct {
	plain
	cli   *clientv3.Client
	n     int
	limit string // n, as stored in etcd
	nKey  string // where the limit is stored, outside the queue
}

func (p permit) key(id string) string { return p.keys + id + "-n" + p.limit }

func (p permit) busy(ctx context.Context) (bool, error) {
	resp, err := p.cli.Txn(ctx).Then(
		clientv3.OpGet(p.nKey),
		clientv3.OpGet(p.keys, clientv3.WithPrefix(), clientv3.WithCountOnly()),
	).Commit()
	if err != nil {
		return false, err
	}
	count := resp.Responses[1].GetResponseRange().Count
	if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) > 0 && count > 0 {
		// A limit stored by holders who are all gone binds nobody.
		if err := p.agree(string(kvs[0].Value)); err != nil {
			return false, err
		}
	}
	return count >= int64(p.n), nil
}

func (p permit) agree(stored string) error {
	if stored != p.limit {
		return fmt.Errorf("%w: %d here, %s in etcd", ErrLimitMismatch, p.n, stored)
	}
	return nil
}

// join queues a key for a permit, in one transaction with the check of the
// limit: under the stored limit if it agrees; or, when the queue is empty,
// storing it, over whatever limit the last users left. The limit is also in
// each key's name, for the rare case below.
func (p permit) join(ctx context.Context, key, value string, ls *lease.Lease) (*queue.Entry, error) {
	join := func(branches []queue.Branch, els ...clientv3.Op) (*queue.Entry, queue.Joined, error) {
		return p.q.JoinIf(ctx, key, value, ls, queue.Terms{Branches: branches, Else: els})
	}
	store := clientv3.OpPut(p.nKey, p.limit, clientv3.WithLease(ls.ID()))
	noLimit := clientv3.Compare(clientv3.CreateRevision(p.nKey), "=", 0)
	var e *queue.Entry
	for e == nil {
		var out queue.Joined
		var err error
		e, out, err = join([]queue.Branch{
			{If: []clientv3.Cmp{clientv3.Compare(clientv3.Value(p.nKey), "=", p.limit)}},
			{If: []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(p.keys), "=", 0).WithPrefix()},
				Also: []clientv3.Op{store}},
		}, clientv3.OpGet(p.nKey), clientv3.OpGet(p.keys, clientv3.WithPrefix(), clientv3.WithLimit(1)))
		if !errors.Is(err, queue.ErrNoBranch) {
			if err != nil {
				return nil, err
			}
			break
		}
		if kvs := out.Responses[0].GetResponseRange().Kvs; len(kvs) > 0 {
			return nil, p.agree(string(kvs[0].Value))
		}
		kvs := out.Responses[1].GetResponseRange().Kvs
		if len(kvs) == 0 {
			continue // not reached: an empty queue takes the second branch
		}
		// The stored limit went with the lease that stored it, but the
		// queue is not empty. Every key in it agreed with the limit when it
		// joined, so any one of them, while it exists, tells the limit.
		other := kvs[0]
		if err := p.agree(limitOf(string(other.Key))); err != nil {
			return nil, err
		}
		e, _, err = join([]queue.Branch{{
			If:   []clientv3.Cmp{noLimit, clientv3.Compare(clientv3.CreateRevision(string(other.Key)), "=", other.CreateRevision)},
			Also: []clientv3.Op{store},
		}})
		if err != nil && !errors.Is(err, queue.ErrNoBranch) {
			return nil, err
		}
	}
	return e, nil
}

// limitOf returns the limit in a permit key's name, "<id>-n<limit>".
func limitOf(key string) string {
	if i := strings.LastIndex(key, "-n"); i >= 0 {
		return key[i+2:]
	}
	return "?"
}
