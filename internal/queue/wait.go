package queue

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/leasekit/leasekit/internal/etcderr"
)

// A waiter admitted when fewer than n keys are ahead watches the n+1
// nearest. That costs each delete one more event, but lets the waiter
// right behind the holder know that nothing is ahead of the holder, so
// the holder's delete event alone admits it: no read between the event and
// "I hold it".
//
// Once no more than n+1 keys are ahead (the window is complete), a waiter
// watches the queue's deletes instead of those keys one by one: one watch
// of the whole prefix, with puts filtered out by etcd. etcd sends a
// watcher every event of one revision in one response, so a transaction
// that deletes the holder's key and the waiter's own together (etcdctl
// del --prefix, a shared lease revoked) arrives as one response, and the
// waiter learns that its key is gone in the same step that would admit
// it: it is never admitted with a key that is gone, and still needs no
// read after the event. Two separate watches could deliver the two
// deletes in either order. Only the n+1 waiters nearest the front watch
// so, and the deletes of keys behind them (waiters giving up) reach them
// too, so a delete still reaches a bounded number of waiters.

// Admitted reports whether fewer than n keys were ahead at the newest read
// or event, without a network call. n must not exceed the n given to Join.
func (e *Entry) Admitted(n int) bool { return e.ahead.complete && len(e.ahead.keys) < n }

// Wait blocks until fewer than n keys are ahead of the entry, the entry
// ends (its key deleted or lost fired), or ctx ends. It must not be called
// concurrently with itself. watchCtx is as for Join.
func (e *Entry) Wait(ctx, watchCtx context.Context, n int) error {
	// Watches end with the wait: when it returns, ctx ends or the entry
	// ends, so none can keep a call blocked on an unreachable etcd.
	wctx, cancel := context.WithCancel(watchCtx)
	defer cancel()
	defer context.AfterFunc(ctx, cancel)()
	defer context.AfterFunc(e.ended, cancel)()
	w := &waiter{e: e, n: n, ctx: ctx, wctx: wctx, watching: map[int64]context.CancelFunc{},
		events: make(chan event)}
	return w.run()
}

// event is a delete of a watched key, the deletes of one revision in the
// queue, or a broken watch (err set).
type event struct {
	rev  int64    // the watch: the deleted key's create revision, or queueWatch
	gone []string // for queueWatch, the keys deleted in one revision
	err  error
}

// queueWatch is the watch of the whole queue's deletes in watching, where
// key watches are under their keys' create revisions, which are never 0.
const queueWatch = 0

type waiter struct {
	e        *Entry
	n        int
	ctx      context.Context
	wctx     context.Context
	watching map[int64]context.CancelFunc // by the key's create revision, or queueWatch
	events   chan event
}

func (w *waiter) run() error {
	b := etcderr.Backoff{Min: retryMin, Max: retryMax}
	for {
		err := w.step()
		if err == nil {
			b.Reset()
			continue
		}
		if err == errAdmitted {
			return w.e.Err()
		}
		// etcd is between leaders or overloaded: the wait goes on until
		// ctx or the entry ends. Start again from a linearizable read.
		w.stopAll()
		if err := w.e.pause(w.ctx, err, &b); err != nil {
			return err
		}
		if err := w.e.reread(w.ctx, w.n, 0); err != nil && !etcderr.Transient(err) {
			return err
		}
	}
}

// pause waits before a wait tries again after err. It returns err at once
// if ctx or the entry has ended or err is not transient, and the reason if
// either ends during the pause.
func (e *Entry) pause(ctx context.Context, err error, b *etcderr.Backoff) error {
	if ctx.Err() != nil || e.Err() != nil || !etcderr.Transient(err) {
		return err
	}
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(e.ended, cancel)()
	if b.Wait(pctx) != nil {
		if err := e.Err(); err != nil {
			return err
		}
		return ctx.Err()
	}
	return nil
}

// errAdmitted ends the wait loop.
var errAdmitted = errors.New("admitted")

// Bounds of the pause before a wait tries again after a transient error.
const (
	retryMin = 20 * time.Millisecond
	retryMax = time.Second
)

// step brings the window up to date and waits for one change to it.
func (w *waiter) step() error {
	e := w.e
	if !e.ahead.complete && len(e.ahead.keys) < w.n+1 {
		// Deletes emptied a window that may not hold every key ahead.
		if err := w.refill(); err != nil {
			return err
		}
	}
	if e.Admitted(w.n) {
		return errAdmitted
	}
	if err := w.watchWindow(); err != nil {
		return err
	}
	if e.Admitted(w.n) {
		return errAdmitted
	}
	select {
	case ev := <-w.events:
		if _, ok := w.watching[ev.rev]; !ok {
			return nil // from a watch stopped since: a read has replaced it
		}
		if ev.err != nil {
			return ev.err // a broken watch (no leader, compaction)
		}
		if ev.rev != queueWatch {
			w.forget(ev.rev)
			return nil
		}
		return w.deleted(ev.gone)
	case <-e.Done():
		return e.Err()
	case <-w.ctx.Done():
		return w.ctx.Err()
	}
}

// refill reads the window again after deletes emptied it. Usually the
// waiter has then come within n+1 of the front, so the queue watch starts
// too, alongside the read, which then closes its gap as well; if the read
// shows more keys ahead than that, the queue watch stops again.
func (w *waiter) refill() error {
	opened := make(chan watch, 1)
	go func() { opened <- w.open(w.e.prefix, queueOpts...) }()
	err := w.e.reread(w.ctx, w.n, 0)
	wt := <-opened
	switch {
	case err != nil:
		if wt.err == nil {
			wt.cancel()
		}
		return err
	case wt.err != nil:
		return wt.err
	}
	w.follow(queueWatch, wt)
	if w.e.ahead.rev < wt.rev {
		// Read before the watch started: a delete in between is in
		// neither.
		if err := w.e.reread(w.ctx, w.n, wt.rev); err != nil {
			return err
		}
	}
	if !w.e.ahead.complete {
		w.unwatch(queueWatch)
	}
	w.prune()
	return nil
}

// deleted applies one revision's deletes in the queue: the entry's own
// key, which ends the entry, before keys ahead, which may admit it.
func (w *waiter) deleted(keys []string) error {
	gone := make(map[string]bool, len(keys))
	for _, k := range keys {
		gone[k] = true
	}
	if gone[w.e.key] {
		w.e.end(ErrGone)
		return ErrGone
	}
	ahead := w.e.ahead.keys[:0]
	for _, kv := range w.e.ahead.keys {
		if !gone[string(kv.Key)] {
			ahead = append(ahead, kv)
		}
	}
	w.e.ahead.keys = ahead
	return nil
}

// watchWindow starts watches on window keys not yet watched, then reads
// again to close the gap: a key deleted before its watch started sent no
// event. It repeats while the read shows keys not yet watched. A complete
// window is watched by the queue watch instead.
func (w *waiter) watchWindow() error {
	for {
		if w.e.ahead.complete {
			if _, ok := w.watching[queueWatch]; ok {
				return nil
			}
			started, err := w.watchQueue()
			if err != nil {
				return err
			}
			w.prune() // every key watch: the queue watch sees their deletes
			// The window stays complete: keys ahead only go away.
			return w.e.reread(w.ctx, w.n, started)
		}
		var started int64
		for _, kv := range w.e.ahead.keys {
			if _, ok := w.watching[kv.CreateRevision]; ok {
				continue
			}
			rev, err := w.watch(kv)
			if err != nil {
				return err
			}
			started = max(started, rev)
		}
		if started == 0 {
			return nil
		}
		// Watches start at the current revision: a watch that starts in
		// the past is served by etcd's slow 100ms catch-up loop.
		if err := w.e.reread(w.ctx, w.n, started); err != nil {
			return err
		}
		w.prune()
	}
}

// queueOpts make a watch of the queue's prefix report deletes only.
var queueOpts = []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithFilterPut()}

// watchQueue starts watching the deletes in the whole queue from now, and
// returns the revision it starts after.
func (w *waiter) watchQueue() (int64, error) {
	return w.start(queueWatch, w.e.prefix, queueOpts...)
}

// watch starts watching kv from now and returns the revision it starts
// after.
func (w *waiter) watch(kv *mvccpb.KeyValue) (int64, error) {
	return w.start(kv.CreateRevision, string(kv.Key))
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

// watch is a watch that etcd confirmed, or why it did not start.
type watch struct {
	ctx    context.Context
	cancel context.CancelFunc
	ch     clientv3.WatchChan
	rev    int64 // the revision it starts after
	err    error
}

// open starts a watch of key (with opts) from now and waits until etcd
// confirms it. It changes nothing in w, so it may run beside a read.
func (w *waiter) open(key string, opts ...clientv3.OpOption) watch {
	ctx, cancel := context.WithCancel(w.wctx)
	ch := w.e.cli.Watch(ctx, key, append(opts[:len(opts):len(opts)], clientv3.WithCreatedNotify())...)
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
// until its key goes; for the queue watch, one event per revision with
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
			send(event{rev: id, err: fmt.Errorf("%w: broke: %v", etcderr.ErrWatch, err)})
			return
		}
		var gone []string
		for _, ev := range wr.Events {
			if ev.Type == mvccpb.DELETE {
				gone = append(gone, string(ev.Kv.Key))
			}
		}
		switch {
		case len(gone) == 0:
		case id != queueWatch:
			send(event{rev: id})
			return
		case !send(event{rev: id, gone: gone}):
			return
		}
	}
	if ctx.Err() == nil {
		send(event{rev: id, err: fmt.Errorf("%w: closed", etcderr.ErrWatch)})
	}
}

// forget drops a deleted key from the window and stops its watch.
func (w *waiter) forget(rev int64) {
	w.unwatch(rev)
	keys := w.e.ahead.keys[:0]
	for _, kv := range w.e.ahead.keys {
		if kv.CreateRevision != rev {
			keys = append(keys, kv)
		}
	}
	w.e.ahead.keys = keys
}

// prune stops watches on keys a read no longer shows, and every key
// watch while the queue watch runs.
func (w *waiter) prune() {
	in := make(map[int64]bool, len(w.e.ahead.keys))
	if _, all := w.watching[queueWatch]; !all {
		for _, kv := range w.e.ahead.keys {
			in[kv.CreateRevision] = true
		}
	}
	for rev := range w.watching {
		if rev != queueWatch && !in[rev] {
			w.unwatch(rev)
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
	for rev, cancel := range w.watching {
		cancel()
		delete(w.watching, rev)
	}
}

// reread reads the n+1 keys nearest ahead. A serializable read is enough
// when it reflects at least revision atLeast, because keys ahead only ever
// go away; otherwise, or when atLeast is 0, it reads linearizably.
func (e *Entry) reread(ctx context.Context, n int, atLeast int64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if atLeast > 0 {
		// A member lagging behind the entry's own key would not show it.
		atLeast = max(atLeast, e.rev)
	}
	resp, err := e.read(ctx, n, atLeast > 0)
	if err == nil && atLeast > 0 && resp.Header.Revision < atLeast {
		resp, err = e.read(ctx, n, false)
	}
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return err
	}
	if len(resp.Responses[0].GetResponseRange().Kvs) == 0 {
		e.end(ErrGone)
		return ErrGone
	}
	e.ahead = newWindow(resp.Responses[1].GetResponseRange().Kvs, n, resp.Header.Revision)
	return nil
}

// newWindow keeps the n+1 nearest of kvs, read at revision rev with a
// limit of n+2.
func newWindow(kvs []*mvccpb.KeyValue, n int, rev int64) window {
	if len(kvs) > n+1 {
		return window{keys: kvs[:n+1], rev: rev}
	}
	return window{keys: kvs, complete: true, rev: rev}
}

func (e *Entry) read(ctx context.Context, n int, serializable bool) (*clientv3.TxnResponse, error) {
	var opts []clientv3.OpOption
	if serializable {
		opts = append(opts, clientv3.WithSerializable())
	}
	ahead := append([]clientv3.OpOption{
		clientv3.WithPrefix(), clientv3.WithLimit(int64(n) + 2), clientv3.WithMaxCreateRev(e.rev - 1),
		clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortDescend),
	}, opts...)
	return e.cli.Txn(ctx).Then(clientv3.OpGet(e.key, opts...), clientv3.OpGet(e.prefix, ahead...)).Commit()
}
