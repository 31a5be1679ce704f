package etcdlock

import (
	"context"
	"fmt"

	"github.com/leasekit/leasekit/internal/keys"
	"github.com/leasekit/leasekit/internal/lease"
	"github.com/leasekit/leasekit/internal/queue"
)

// A shape is one kind of hold on one name: a mutex, a semaphore permit,
// an RWMutex's reader or its writer. They share one acquire path
// (acquire.go): validation, leases, keys, cleanup of waiters' keys,
// metrics and the *lock handle. A shape says only what differs.
type shape interface {
	// describe names the hold, for errors and metrics: "lock",
	// "semaphore", "read lock" or "write lock", and its name.
	describe() (kind, name string)
	// queue is the queue the hold waits in, with the rule that admits
	// it: what may be ahead of it.
	queue() *queue.Queue
	// key names the key of the hold whose id (unique among the Locker's
	// keys in use) is id.
	key(id string) string
	// join puts key in the queue with value, attached to ls.
	join(ctx context.Context, key, value string, ls *lease.Lease) (*queue.Entry, error)
	// busy reports, by reading only, whether a hold now would have to
	// wait: TryLock's look before it writes anything.
	busy(ctx context.Context) (bool, error)
}

// plain is the shape of a mutex, and of an RWMutex's reader and writer:
// they differ only in their queue's rule and where their keys go.
type plain struct {
	kind, name string
	q          *queue.Queue
	keys       string // the prefix of its keys, within the queue's
}

func (p plain) describe() (string, string) { return p.kind, p.name }
func (p plain) queue() *queue.Queue        { return p.q }
func (p plain) key(id string) string       { return p.keys + id }

func (p plain) join(ctx context.Context, key, value string, ls *lease.Lease) (*queue.Entry, error) {
	return p.q.Join(ctx, key, value, ls)
}

func (p plain) busy(ctx context.Context) (bool, error) { return p.q.Busy(ctx) }

// mutex is the shape of a plain lock: admitted when no key is ahead.
func (l *Locker) mutex(name string) (plain, error) {
	prefix, err := l.shapeBase("", name)
	if err != nil {
		return plain{}, err
	}
	return plain{kind: "lock", name: name, q: queue.New(l.cli, prefix, queue.Rule{N: 1}), keys: prefix}, nil
}

// The queues of the shapes beside the mutex live beside the mutexes'
// under the Locker's prefix, behind a segment that starts with '%' and is
// not a valid escape, so no encoded lock name can equal it: the mutex
// "%sem" is encoded as "%25sem".
const (
	semSegment = "%sem/"
	rwSegment  = "%rw/"
)

// shapeBase returns where the queue of the named hold of one shape lives:
// the shape's segment ("" for a mutex) and the encoded name under the
// Locker's prefix. A name that cannot be encoded is ErrInvalidKey.
func (l *Locker) shapeBase(segment, name string) (string, error) {
	enc, err := keys.Encode(name)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrInvalidKey, err)
	}
	return l.prefix + segment + enc + "/", nil
}
