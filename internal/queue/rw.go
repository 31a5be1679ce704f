package queue

import (
	"context"
	"fmt"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/leasekit/leasekit/internal/etcderr"
)

// A reader of a read-write lock is admitted when no writer is ahead of it,
// however many readers are. Writers' keys live under a sub-prefix of the
// queue, so one filtered read finds the nearest writer ahead. The reader
// watches only that writer: the writers further ahead are ahead of it too,
// and it is not admitted before they are gone. When it goes, the reader
// reads again; usually nothing is left, and every reader behind that
// writer is admitted by the one delete event.

// NearestOp reads the newest key under sub; in JoinFirst's Also, where the
// entry's own key is the newest in the queue, that is the nearest key under
// sub ahead of the entry. Pass its response to WaitNone.
func NearestOp(sub string) clientv3.Op {
	return clientv3.OpGet(sub, clientv3.WithPrefix(), clientv3.WithLimit(1),
		clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortDescend))
}

// WaitNone blocks until no key under sub (a prefix inside the queue's) is
// ahead of the entry, the entry ends, or ctx ends. nearest is the nearest
// such key known, as NearestOp read it, or nil if none was. watchCtx is as
// for Join. Like Wait, it watches from the current revision and closes the
// gap with a read, and rides out transient errors (etcd between leaders):
// it pauses and starts again.
func (e *Entry) WaitNone(ctx, watchCtx context.Context, sub string, nearest *mvccpb.KeyValue) error {
	b := etcderr.Backoff{Min: retryMin, Max: retryMax}
	for nearest != nil {
		next, err := e.waitGone(ctx, watchCtx, sub, nearest)
		if err == nil {
			nearest = next
			b.Reset()
			continue
		}
		// A new watch of the same key, and the read after it, tell what
		// happened meanwhile.
		if err := e.pause(ctx, err, &b); err != nil {
			return err
		}
	}
	return e.Err()
}

// waitGone waits until kv is deleted, then returns the nearest key under
// sub ahead of the entry, or nil.
func (e *Entry) waitGone(ctx, watchCtx context.Context, sub string, kv *mvccpb.KeyValue) (*mvccpb.KeyValue, error) {
	wctx, cancel := context.WithCancel(watchCtx)
	defer cancel()
	// The watch must not outlive ctx or the entry: Watch itself blocks
	// while etcd is unreachable.
	defer context.AfterFunc(ctx, cancel)()
	defer context.AfterFunc(e.ended, cancel)()
	// From now, not from kv's revision: a watch that starts in the past is
	// served by etcd's slow 100ms catch-up loop.
	ch := e.cli.Watch(wctx, string(kv.Key), clientv3.WithCreatedNotify())
	var started int64
	select {
	case wr, ok := <-ch:
		if !ok || wr.Err() != nil || !wr.Created {
			if err := brokenBy(ctx, watchCtx); err != nil {
				return nil, err
			}
			// A broken watch (no leader, say): read afresh, linearizably.
			return e.nearestAhead(ctx, sub, 0)
		}
		started = wr.Header.Revision
	case <-e.Done():
		return nil, e.Err()
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	// A key deleted before the watch started sent no event.
	next, err := e.nearestAhead(ctx, sub, started)
	if err != nil || next == nil || next.CreateRevision != kv.CreateRevision {
		return next, err
	}
	for {
		select {
		case wr, ok := <-ch:
			if !ok || wr.Err() != nil || wr.Canceled {
				if err := brokenBy(ctx, watchCtx); err != nil {
					return nil, err
				}
				return e.nearestAhead(ctx, sub, 0)
			}
			for _, ev := range wr.Events {
				if ev.Type == mvccpb.DELETE {
					// Keys ahead only go away, so any state at least as
					// new as the delete is good enough.
					return e.nearestAhead(ctx, sub, ev.Kv.ModRevision)
				}
			}
		case <-e.Done():
			return nil, e.Err()
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// nearestAhead reads the nearest key under sub ahead of the entry, and
// checks that the entry's own key still exists. A serializable read is
// enough when it reflects at least revision atLeast; otherwise, or when
// atLeast is 0, it reads linearizably.
func (e *Entry) nearestAhead(ctx context.Context, sub string, atLeast int64) (*mvccpb.KeyValue, error) {
	if atLeast > 0 {
		// A watch served by a lagging member can start, and even see
		// deletes, below the entry's own revision; a read that old would
		// not show the entry's key and end it for nothing.
		atLeast = max(atLeast, e.rev)
	}
	resp, err := e.readNearest(ctx, sub, atLeast > 0)
	if err == nil && atLeast > 0 && resp.Header.Revision < atLeast {
		resp, err = e.readNearest(ctx, sub, false)
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("queue: read: %w", err)
	}
	if len(resp.Responses[0].GetResponseRange().Kvs) == 0 {
		e.end(ErrGone)
		return nil, ErrGone
	}
	if kvs := resp.Responses[1].GetResponseRange().Kvs; len(kvs) > 0 {
		return kvs[0], nil
	}
	return nil, nil
}

func (e *Entry) readNearest(ctx context.Context, sub string, serializable bool) (*clientv3.TxnResponse, error) {
	var opts []clientv3.OpOption
	if serializable {
		opts = append(opts, clientv3.WithSerializable())
	}
	ahead := append([]clientv3.OpOption{
		clientv3.WithPrefix(), clientv3.WithLimit(1), clientv3.WithMaxCreateRev(e.rev - 1),
		clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortDescend),
	}, opts...)
	return e.cli.Txn(ctx).Then(clientv3.OpGet(e.key, opts...), clientv3.OpGet(sub, ahead...)).Commit()
}

// brokenBy returns the error of whichever context ended, if one did: then
// a broken watch is not worth starting again.
func brokenBy(ctx, watchCtx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := watchCtx.Err(); err != nil {
		return fmt.Errorf("queue: watch context: %w", err)
	}
	return nil
}
