package queue

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// A waiter admitted when fewer than n keys are ahead watches the n+1
// nearest. That costs each delete one more event, but lets the waiter
// right behind the holder know that nothing is ahead of the holder, so
// the holder's delete event alone admits it: no read between the event and
// "I hold it".

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

// event is a delete of a watched key, or a broken watch (err set).
type event struct {
	rev int64 // the deleted key's create revision
	at  int64 // the revision of the delete
	err error
}

type waiter struct {
	e        *Entry
	n        int
	ctx      context.Context
	wctx     context.Context
	watching map[int64]context.CancelFunc // by the key's create revision
	events   chan event
}

func (w *waiter) run() error {
	backoff := retryMin
	for {
		err := w.step()
		if err == nil {
			backoff = retryMin
			continue
		}
		if err == errAdmitted {
			return w.e.Err()
		}
		if w.ctx.Err() != nil || w.e.Err() != nil || !transient(err) {
			return err
		}
		// etcd is between leaders or overloaded: the wait goes on until
		// ctx or the entry ends. Start again from a linearizable read.
		w.stopAll()
		select {
		case <-time.After(backoff):
		case <-w.e.Done():
			return w.e.Err()
		case <-w.ctx.Done():
			return w.ctx.Err()
		}
		backoff = min(2*backoff, retryMax)
		if err := w.e.reread(w.ctx, w.n, 0); err != nil && !transient(err) {
			return err
		}
	}
}

// errWatch marks a watch that did not start or broke.
var errWatch = errors.New("queue: watch")

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
		if err := e.reread(w.ctx, w.n, 0); err != nil {
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
		if ev.err != nil {
			return ev.err // a broken watch (no leader, compaction)
		}
		w.forget(ev.rev)
		return nil
	case <-e.Done():
		return e.Err()
	case <-w.ctx.Done():
		return w.ctx.Err()
	}
}

// transient reports whether an error of etcd's may pass: no leader, a
// timeout inside etcd, a closed or broken watch, a lost connection.
func transient(err error) bool {
	return errors.Is(err, errWatch) || ambiguous(err) ||
		errors.Is(err, rpctypes.ErrNoLeader) || errors.Is(err, rpctypes.ErrTimeout) ||
		errors.Is(err, rpctypes.ErrTimeoutDueToLeaderFail) || errors.Is(err, rpctypes.ErrTimeoutDueToConnectionLost)
}

// watchWindow starts watches on window keys not yet watched, then reads
// again to close the gap: a key deleted before its watch started sent no
// event. It repeats while the read shows keys not yet watched.
func (w *waiter) watchWindow() error {
	for {
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

// watch starts watching kv from now and returns the revision it starts
// after.
func (w *waiter) watch(kv *mvccpb.KeyValue) (int64, error) {
	ctx, cancel := context.WithCancel(w.wctx)
	ch := w.e.cli.Watch(ctx, string(kv.Key), clientv3.WithCreatedNotify())
	var wr clientv3.WatchResponse
	var ok bool
	select {
	case wr, ok = <-ch:
	case <-w.e.Done():
		cancel()
		return 0, w.e.Err()
	case <-w.ctx.Done():
		cancel()
		return 0, w.ctx.Err()
	}
	if !ok || wr.Err() != nil || !wr.Created {
		cancel()
		if w.ctx.Err() != nil {
			return 0, w.ctx.Err()
		}
		if !ok {
			return 0, fmt.Errorf("%w: closed", errWatch)
		}
		return 0, fmt.Errorf("%w: %w", errWatch, wr.Err())
	}
	w.watching[kv.CreateRevision] = cancel
	go w.forward(ctx, kv.CreateRevision, ch)
	return wr.Header.Revision, nil
}

// forward turns one watch's responses into events until its key goes.
func (w *waiter) forward(ctx context.Context, rev int64, ch clientv3.WatchChan) {
	send := func(ev event) {
		select {
		case w.events <- ev:
		case <-ctx.Done():
		}
	}
	for wr := range ch {
		if err := wr.Err(); err != nil || wr.Canceled {
			send(event{rev: rev, err: fmt.Errorf("%w: broke: %v", errWatch, err)})
			return
		}
		for _, ev := range wr.Events {
			if ev.Type == mvccpb.DELETE {
				send(event{rev: rev, at: ev.Kv.ModRevision})
				return
			}
		}
	}
	if ctx.Err() == nil {
		send(event{rev: rev, err: fmt.Errorf("%w: closed", errWatch)})
	}
}

// forget drops a deleted key from the window and stops its watch.
func (w *waiter) forget(rev int64) {
	if cancel, ok := w.watching[rev]; ok {
		cancel()
		delete(w.watching, rev)
	}
	keys := w.e.ahead.keys[:0]
	for _, kv := range w.e.ahead.keys {
		if kv.CreateRevision != rev {
			keys = append(keys, kv)
		}
	}
	w.e.ahead.keys = keys
}

// prune stops watches on keys a read no longer shows.
func (w *waiter) prune() {
	in := make(map[int64]bool, len(w.e.ahead.keys))
	for _, kv := range w.e.ahead.keys {
		in[kv.CreateRevision] = true
	}
	for rev, cancel := range w.watching {
		if !in[rev] {
			cancel()
			delete(w.watching, rev)
		}
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
	e.ahead = newWindow(resp.Responses[1].GetResponseRange().Kvs, n)
	return nil
}

// newWindow keeps the n+1 nearest of kvs, read with a limit of n+2.
func newWindow(kvs []*mvccpb.KeyValue, n int) window {
	if len(kvs) > n+1 {
		return window{keys: kvs[:n+1]}
	}
	return window{keys: kvs, complete: true}
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
