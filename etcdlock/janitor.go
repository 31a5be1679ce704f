package etcdlock

import (
	"context"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/leasekit/leasekit/internal/etcderr"
)

// inFlight is how long a write whose outcome is unknown may still land:
// etcd's request timeout plus an election, with room to spare.
const inFlight = 15 * time.Second

// orphan is a key the Locker must make sure is deleted: one whose delete
// failed, or one whose write had an unknown outcome and may yet land. On a
// shared lease the keepalive would keep it, and it would block its queue,
// for good. Its slot stays taken until the janitor is done with it.
type orphan struct {
	key   string
	rev   int64 // the key's create revision; 0 if unknown
	queue string
	slot  int
	until time.Time // with rev 0: when no write in flight can land any more
}

// noSlot is the slot of an orphan whose slot was freed already.
const noSlot = -1

// dispose hands o to the janitor, which deletes it in the background.
func (l *Locker) dispose(o orphan) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return // Close revokes the shared leases, and the key with them
	}
	l.orphans = append(l.orphans, o)
	if !l.sweeping {
		l.sweeping = true
		l.wg.Add(1)
		go l.sweep()
	}
}

// sweep is the janitor: it deletes orphans until none is left or the
// Locker closes, backing off while etcd does not answer.
func (l *Locker) sweep() {
	defer l.wg.Done()
	b := etcderr.Backoff{Min: 100 * time.Millisecond, Max: 2 * time.Second}
	for {
		l.mu.Lock()
		pending := l.orphans
		l.orphans = nil
		if len(pending) == 0 {
			l.sweeping = false
			l.mu.Unlock()
			return
		}
		l.mu.Unlock()
		var left []orphan
		for _, o := range pending {
			if l.sweepOne(o) && o.slot != noSlot {
				l.freeSlot(o.queue, o.slot)
			} else {
				left = append(left, o)
			}
		}
		l.mu.Lock()
		l.orphans = append(l.orphans, left...)
		l.mu.Unlock()
		if b.Wait(l.ctx) != nil {
			return // Close revokes the shared leases
		}
	}
}

// sweepOne deletes o if it exists and reports whether o needs no more
// attention.
func (l *Locker) sweepOne(o orphan) bool {
	ctx, cancel := context.WithTimeout(l.ctx, etcderr.CleanupTimeout)
	defer cancel()
	cmp := clientv3.Compare(clientv3.CreateRevision(o.key), "=", o.rev)
	if o.rev == 0 {
		cmp = clientv3.Compare(clientv3.CreateRevision(o.key), "!=", 0)
	}
	if _, err := l.cli.Txn(ctx).If(cmp).Then(clientv3.OpDelete(o.key)).Commit(); err != nil {
		return false
	}
	// A key of known revision is gone for good; one of unknown outcome is
	// watched for until no write can land any more.
	return o.rev != 0 || time.Now().After(o.until)
}
