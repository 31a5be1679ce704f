package queue

import (
	"context"
	"fmt"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/leasekit/leasekit/internal/etcderr"
)

// The watches of one wait: one per key of an incomplete window, under the
// key's create revision (never 0), or the front watch of every delete in
// scope, under frontWatch.

// frontWatch is the id of the front watch in waiter.watching.
const frontWatch = 0

// frontOpts make a watch of the scope's prefix report deletes only.
var frontOpts = []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithFilterPut()}

// event is a delete of a watched key, the deletes of one revision in
// scope, or a broken watch (err set).
type event struct {
	id   int64      // the watch: the deleted key's create revision, or frontWatch
	rev  int64      // the revision of the deletes
	gone []deletion // for frontWatch, the deletes of one revision
	err  error
}

// deletion is a delete of key at revision rev. It ended the key created
// at a revision c only if rev > c: keys are reused (etcdlock names them by
// slot), and a watch that a member behind the entry's join serves starts
// below it, so it may report deletes of earlier keys of the same name.
type deletion struct {
	key string
	rev int64
}

// watch is a watch that etcd confirmed, or why it did not start.
type watch struct {
	ctx    context.Context
	cancel context.CancelFunc
	ch     clientv3.WatchChan
	rev    int64 // the revision it starts after
	err    error
}

// start starts the watch id of key (with opts) from now, and returns the
// revision it starts after.
func (w *waiter) start(id int64, key string, opts ...clientv3.OpOption) (int64, error) {
	wt := w.open(key, opts...)
	if wt.err != nil {
		return 0, wt.err
	}
	w.follow(id, wt)
	return wt.rev, nil
}

// open starts a watch of key (with opts) from now and waits until etcd
// confirms it. It changes nothing in w, so it may run beside a read.
func (w *waiter) open(key string, opts ...clientv3.OpOption) watch {
	ctx, cancel := context.WithCancel(w.wctx)
	ch := w.e.q.cli.Watch(ctx, key, append(opts[:len(opts):len(opts)], clientv3.WithCreatedNotify())...)
	var wr clientv3.WatchResponse
	var ok bool
	select {
	case wr, ok = <-ch:
	case <-w.e.Done():
		cancel()
		return watch{err: w.e.Err()}
	case <-w.ctx.Done():
		cancel()
		return watch{err: w.ctx.Err()}
	}
	if !ok || wr.Err() != nil || !wr.Created {
		cancel()
		switch {
		case w.ctx.Err() != nil:
			return watch{err: w.ctx.Err()}
		case !ok:
			return watch{err: fmt.Errorf("%w: closed", etcderr.ErrWatch)}
		}
		return watch{err: fmt.Errorf("%w: %w", etcderr.ErrWatch, wr.Err())}
	}
	return watch{ctx: ctx, cancel: cancel, ch: ch, rev: wr.Header.Revision}
}

// follow makes the confirmed watch wt the watch id, forwarding its events.
func (w *waiter) follow(id int64, wt watch) {
	w.watching[id] = wt.cancel
	go w.forward(wt.ctx, id, wt.ch)
}

// forward turns one watch's responses into events: for a key's watch,
// until its key goes; for the front watch, one event per revision with
// deletes, until it stops.
func (w *waiter) forward(ctx context.Context, id int64, ch clientv3.WatchChan) {
	send := func(ev event) bool {
		select {
		case w.events <- ev:
			return true
		case <-ctx.Done():
			return false
		}
	}
	for wr := range ch {
		if err := wr.Err(); err != nil || wr.Canceled {
			send(event{id: id, err: fmt.Errorf("%w: broke: %v", etcderr.ErrWatch, err)})
			return
		}
		var gone []deletion
		for _, ev := range wr.Events {
			// A key's watch reports its key's end, not an earlier key's.
			if ev.Type == mvccpb.DELETE && (id == frontWatch || ev.Kv.ModRevision > id) {
				gone = append(gone, deletion{key: string(ev.Kv.Key), rev: ev.Kv.ModRevision})
			}
		}
		switch {
		case len(gone) == 0:
		case id != frontWatch:
			send(event{id: id, rev: wr.Header.Revision})
			return
		case !send(event{id: id, rev: wr.Header.Revision, gone: gone}):
			return
		}
	}
	if ctx.Err() == nil {
		send(event{id: id, err: fmt.Errorf("%w: closed", etcderr.ErrWatch)})
	}
}

// prune stops watches on keys a read no longer shows, and every key
// watch while the front watch runs.
func (w *waiter) prune() {
	in := make(map[int64]bool, len(w.e.ahead.keys))
	if _, all := w.watching[frontWatch]; !all {
		for _, kv := range w.e.ahead.keys {
			in[kv.CreateRevision] = true
		}
	}
	for id := range w.watching {
		if id != frontWatch && !in[id] {
			w.unwatch(id)
		}
	}
}

// unwatch stops the watch id.
func (w *waiter) unwatch(id int64) {
	if cancel, ok := w.watching[id]; ok {
		cancel()
		delete(w.watching, id)
	}
}

func (w *waiter) stopAll() {
	for id := range w.watching {
		w.unwatch(id)
	}
}
