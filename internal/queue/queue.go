// Package queue is the revision-ordered wait queue under every leasekit
// primitive: etcdlock's mutex and semaphore, and election's candidates.
//
// Each participant puts one key under the queue's prefix, attached to its
// lease. etcd gives every key a create revision, and that order is the
// queue. A participant is admitted when fewer than n keys are ahead of it
// (n = 1 for a mutex or an election). It waits by watching only the n keys
// immediately ahead of it: if none of those goes, at least n stay ahead.
// So a handoff wakes one waiter, not the herd.
//
// Waiting never polls, and never falls into etcd's 100ms loop for
// "unsynced" watches that start at a past revision: the watches start at
// the current revision, then one read closes the gap between the read that
// chose them and the moment they started. After a delete event the waiter
// re-reads with a serializable read, which needs no raft round: the keys
// ahead can only disappear, so any state at least as new as the event is
// good enough.
package queue

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Errors Wait and Done report.
var (
	// ErrGone means the entry's own key was deleted: by its lease expiring
	// or being revoked, or by another client.
	ErrGone = errors.New("queue key deleted")
	// ErrLeft means the entry was left through Leave or Close.
	ErrLeft = errors.New("queue entry left")
	// ErrAmbiguous means etcd did not say whether a write happened.
	ErrAmbiguous = errors.New("queue write outcome unknown")
)

// SelfWatchDelay is how long an entry waits before it watches its own key
// for deletes by others. A delete in that time is still seen, just later.
const SelfWatchDelay = 25 * time.Millisecond

// CleanupTimeout bounds calls made after the caller's context is gone.
const CleanupTimeout = 2 * time.Second

// Entry is one participant's key in a queue.
type Entry struct {
	cli    *clientv3.Client
	prefix string
	key    string
	rev    int64
	value  string
	lease  clientv3.LeaseID

	// ahead is what Join and Wait know of the keys ahead.
	ahead window

	rebind   chan (<-chan struct{})
	done     chan struct{}
	stopOnce sync.Once
	stop     chan struct{}
	stopped  chan struct{}
	mu       sync.Mutex
	err      error
	afterEnd func(error)
}

// window is what is known of the keys ahead of an entry: the nearest ones,
// newest first, less those whose delete was seen. complete means no other
// key is ahead. (A read cannot learn more from etcd's Count: it counts
// before the create-revision filter.)
type window struct {
	keys     []*mvccpb.KeyValue
	complete bool
}

// Join adds key to the queue under prefix, attached to lease, and returns
// its entry, which then watches its own key until Leave. watchCtx carries
// the metadata for watches (such as clientv3.WithRequireLeader); entries
// whose watchCtx have equal metadata share one watch stream. lost, if not
// nil, ends the entry the moment it is closed: pass the lease's Done.
//
// n is how many keys ahead Join reads, for Admitted. If ctx ends or the
// call fails after etcd may have written the key, Join deletes it again
// with a context of its own.
func Join(ctx, watchCtx context.Context, cli *clientv3.Client, prefix, key, value string,
	lease clientv3.LeaseID, n int, lost <-chan struct{}) (*Entry, error) {
	e := &Entry{
		cli: cli, prefix: prefix, key: key, value: value, lease: lease,
		done: make(chan struct{}), stop: make(chan struct{}), stopped: make(chan struct{}),
		rebind: make(chan (<-chan struct{})),
	}
	newest := append([]clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithLimit(int64(n) + 3)},
		clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortDescend))
	resp, err := cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, value, clientv3.WithLease(lease)), clientv3.OpGet(prefix, newest...)).
		Else(clientv3.OpGet(key)).
		Commit()
	if err != nil {
		// The put may have been applied even though the call failed.
		e.removeDetached()
		return nil, fmt.Errorf("%w: %w", ErrAmbiguous, err)
	}
	if !resp.Succeeded {
		// Keys are unique per attempt, so this one is ours from an earlier
		// try that etcd applied; it is not reused.
		e.removeDetached()
		return nil, fmt.Errorf("%w: key %q already exists", ErrAmbiguous, key)
	}
	e.rev = resp.Header.Revision
	rng := resp.Responses[1].GetResponseRange()
	// The new key is the newest in the queue, so it is first in rng.
	e.ahead = newWindow(rng.Kvs[1:], n)
	go e.watchSelf(watchCtx, lost)
	return e, nil
}

// Key returns the entry's etcd key.
func (e *Entry) Key() string { return e.key }

// Rev returns the entry's create revision: its place in the queue and its
// fencing token.
func (e *Entry) Rev() int64 { return e.rev }

// Lease returns the lease the key is attached to.
func (e *Entry) Lease() clientv3.LeaseID { return e.lease }

// Guard returns a comparison that holds while the entry's key exists.
func (e *Entry) Guard() clientv3.Cmp {
	return clientv3.Compare(clientv3.CreateRevision(e.key), "=", e.rev)
}

// Done is closed when the entry ends: its key was deleted, lost fired, or
// Leave was called.
func (e *Entry) Done() <-chan struct{} { return e.done }

// Err returns why Done was closed, or nil while it is open.
func (e *Entry) Err() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.err
}

func (e *Entry) end(err error) {
	e.mu.Lock()
	if e.err != nil {
		e.mu.Unlock()
		return
	}
	e.err = err
	close(e.done)
	f := e.afterEnd
	e.mu.Unlock()
	if f != nil {
		f(err)
	}
}

// AfterEnd makes f run once the entry ends, with the reason; at once if it
// has already ended. f runs in the goroutine that ends the entry and must
// not block. A later call replaces an earlier f that has not run.
func (e *Entry) AfterEnd(f func(error)) {
	e.mu.Lock()
	err := e.err
	if err == nil {
		e.afterEnd = f
	}
	e.mu.Unlock()
	if err != nil {
		f(err)
	}
}

// watchSelf watches the entry's own key from its create revision on, so
// that no delete can slip by, until the key goes or the entry is left.
func (e *Entry) watchSelf(watchCtx context.Context, lost <-chan struct{}) {
	defer close(e.stopped)
	// Most holds and waits are short. Starting the watch a little later
	// keeps them from paying for it, and loses nothing: it starts at the
	// key's own revision, so it still sees any delete since. Loss of the
	// lease is watched from the start.
	delay := time.NewTimer(SelfWatchDelay)
	defer delay.Stop()
	for wait := true; wait; {
		select {
		case <-e.stop:
			return
		case lost = <-e.rebind:
		case <-lost:
			e.end(ErrGone)
			return
		case <-delay.C:
			wait = false
		}
	}
	ctx, cancel := context.WithCancel(watchCtx)
	defer cancel()
	next := e.rev + 1
	for {
		wch := e.cli.Watch(ctx, e.key, clientv3.WithRev(next))
		for wch != nil {
			select {
			case <-e.stop:
				return
			case lost = <-e.rebind:
			case <-lost:
				e.end(ErrGone)
				return
			case wr, ok := <-wch:
				if !ok {
					wch = nil
					break
				}
				if wr.CompactRevision != 0 {
					// History is gone; ask whether the key still exists.
					next = 0
					wch = nil
					break
				}
				if wr.Err() != nil {
					wch = nil
					break
				}
				for _, ev := range wr.Events {
					if ev.Type == mvccpb.DELETE || ev.Kv.CreateRevision != e.rev {
						e.end(ErrGone)
						return
					}
					next = ev.Kv.ModRevision + 1
				}
			}
		}
		if ctx.Err() != nil {
			return
		}
		if next == 0 {
			if next = e.stillThere(ctx); next == 0 {
				return
			}
			continue
		}
		// The stream broke (no leader, say): start again where it stopped.
		select {
		case <-e.stop:
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// stillThere checks the key after its watch lost history to a compaction.
// It returns the revision to watch from, or 0 if the key is gone (the entry
// then ends) or ctx ended.
func (e *Entry) stillThere(ctx context.Context) int64 {
	for {
		resp, err := e.cli.Get(ctx, e.key)
		if err == nil {
			if len(resp.Kvs) == 0 || resp.Kvs[0].CreateRevision != e.rev {
				e.end(ErrGone)
				return 0
			}
			return resp.Header.Revision + 1
		}
		if ctx.Err() != nil {
			return 0
		}
	}
}

// Rebind makes lost, instead of the channel given to Join, end the entry:
// for a key moved to another lease.
func (e *Entry) Rebind(lost <-chan struct{}) {
	select {
	case e.rebind <- lost:
	case <-e.stopped:
	}
}

// Leave stops watching the key and deletes it if it is still this entry's.
// It returns ErrGone if the key was already gone. When ctx ends first, the
// delete is retried with a context of its own, so no key is left behind
// while etcd is reachable.
func (e *Entry) Leave(ctx context.Context) error {
	e.Close()
	resp, err := e.cli.Txn(ctx).If(e.Guard()).Then(clientv3.OpDelete(e.key)).Commit()
	if err != nil {
		e.removeDetached()
		return err
	}
	if !resp.Succeeded {
		return ErrGone
	}
	return nil
}

// Close stops watching the key without deleting it: for callers that
// delete it another way, such as revoking its lease.
func (e *Entry) Close() {
	e.end(ErrLeft)
	e.stopOnce.Do(func() { close(e.stop) })
	<-e.stopped
}

// removeDetached deletes the key if it is this entry's, with a context
// bounded by CleanupTimeout rather than the caller's.
func (e *Entry) removeDetached() {
	ctx, cancel := context.WithTimeout(context.Background(), CleanupTimeout)
	defer cancel()
	cmp := clientv3.Compare(clientv3.CreateRevision(e.key), "!=", 0)
	if e.rev != 0 {
		cmp = e.Guard()
	}
	e.cli.Txn(ctx).If(cmp).Then(clientv3.OpDelete(e.key)).Commit()
}
