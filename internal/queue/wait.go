package queue

import (
	"context"
	"fmt"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Admitted reports whether fewer than n keys were ahead at the newest read,
// without a network call. n must not exceed the n given to Join.
func (e *Entry) Admitted(n int) bool { return len(e.ahead.keys) < n }

// Wait blocks until fewer than n keys are ahead of the entry, the entry
// ends (its key deleted or lost fired), or ctx ends. It must not be called
// concurrently with itself. watchCtx is as for Join.
func (e *Entry) Wait(ctx, watchCtx context.Context, n int) error {
	for !e.Admitted(n) {
		if err := e.waitChange(ctx, watchCtx, n); err != nil {
			return err
		}
	}
	select {
	case <-e.done:
		return e.Err()
	default:
		return nil
	}
}

// waitChange watches the n keys nearest ahead until one goes, then reads
// the window again.
func (e *Entry) waitChange(ctx, watchCtx context.Context, n int) error {
	wctx, cancel := context.WithCancel(watchCtx)
	defer cancel()

	// Start watching from the current revision: a watch that starts in the
	// past is served by etcd's slow 100ms catch-up loop.
	chans := make([]clientv3.WatchChan, len(e.ahead.keys))
	for i, kv := range e.ahead.keys {
		chans[i] = e.cli.Watch(wctx, string(kv.Key), clientv3.WithCreatedNotify())
	}
	var started int64
	for _, ch := range chans {
		select {
		case wr, ok := <-ch:
			if !ok || wr.Err() != nil || !wr.Created {
				return e.reread(ctx, n, 0, errOrClosed(ctx, wr, ok))
			}
			started = max(started, wr.Header.Revision)
		case <-e.done:
			return e.Err()
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	// Close the gap: a key that went between the read that chose it and
	// its watch starting sent no event.
	if err := e.reread(ctx, n, started, nil); err != nil || !e.same(n) {
		return err
	}

	merged := chans[0]
	if len(chans) > 1 {
		fan := make(chan clientv3.WatchResponse)
		for _, ch := range chans {
			go func() {
				for wr := range ch {
					select {
					case fan <- wr:
					case <-wctx.Done():
						return
					}
				}
			}()
		}
		merged = fan
	}
	for {
		select {
		case wr, ok := <-merged:
			if err := wr.Err(); !ok || err != nil || wr.Canceled {
				// A broken watch (no leader, compaction): read afresh.
				return e.reread(ctx, n, 0, nil)
			}
			for _, ev := range wr.Events {
				if ev.Type == mvccpb.DELETE {
					return e.reread(ctx, n, ev.Kv.ModRevision, nil)
				}
			}
		case <-e.done:
			return e.Err()
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// errOrClosed explains a watch that did not start.
func errOrClosed(ctx context.Context, wr clientv3.WatchResponse, ok bool) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if !ok {
		return fmt.Errorf("queue: watch closed")
	}
	return wr.Err()
}

// same reports whether the window read last still starts with the keys
// being watched; reread sets changed when it does not.
func (e *Entry) same(n int) bool { return !e.changed && !e.Admitted(n) }

// reread reads the n keys nearest ahead. A serializable read is enough
// when it reflects at least revision atLeast, because keys ahead only ever
// go away; otherwise, or when atLeast is 0, it reads linearizably.
// A non-nil cause is returned if the read cannot be made.
func (e *Entry) reread(ctx context.Context, n int, atLeast int64, cause error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	resp, err := e.read(ctx, n, atLeast > 0)
	if err == nil && atLeast > 0 && resp.Header.Revision < atLeast {
		resp, err = e.read(ctx, n, false)
	}
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if cause != nil {
			return cause
		}
		return err
	}
	if len(resp.Responses[0].GetResponseRange().Kvs) == 0 {
		e.end(ErrGone)
		return ErrGone
	}
	rng := resp.Responses[1].GetResponseRange()
	old := e.ahead
	e.ahead = window{keys: rng.Kvs, rev: resp.Header.Revision}
	e.changed = !sameKeys(old.keys, rng.Kvs)
	return nil
}

func (e *Entry) read(ctx context.Context, n int, serializable bool) (*clientv3.TxnResponse, error) {
	var opts []clientv3.OpOption
	if serializable {
		opts = append(opts, clientv3.WithSerializable())
	}
	ahead := append([]clientv3.OpOption{
		clientv3.WithPrefix(), clientv3.WithLimit(int64(n)), clientv3.WithMaxCreateRev(e.rev - 1),
		clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortDescend),
	}, opts...)
	return e.cli.Txn(ctx).Then(clientv3.OpGet(e.key, opts...), clientv3.OpGet(e.prefix, ahead...)).Commit()
}

func sameKeys(a, b []*mvccpb.KeyValue) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].CreateRevision != b[i].CreateRevision {
			return false
		}
	}
	return true
}
