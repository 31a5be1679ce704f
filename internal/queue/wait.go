package queue

import (
	"context"
	"errors"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/leasekit/leasekit/internal/etcderr"
)

// How an entry waits: one model for every rule.
//
// The entry keeps the n+1 keys in scope nearest ahead of it (its window)
// and whether that is every key in scope ahead (complete). It is admitted
// when the window is complete and holds fewer than n keys. Keys ahead can
// only go away, never appear, so a delete event shrinks the window and no
// read is needed to trust it.
//
// Why n+1 and not n: the waiter right behind a mutex holder has a window
// of one key, the holder, and knows it is complete, so the holder's
// delete event alone admits it, with no read between the event and "I
// hold it". Watching one more key costs each delete one more event.
//
// While the window is incomplete, the entry watches its keys one by one,
// so a delete wakes one waiter, not the herd; when deletes empty it below
// n+1 keys, it reads again. Once the window is complete, it watches every
// delete in scope with one watch instead (the front watch; puts filtered
// out by etcd). etcd sends a watcher every event of one revision in one
// response, so when the scope holds the entry's own key, a transaction
// that deletes the key ahead and the entry's own together (etcdctl del
// --prefix, a shared lease revoked) arrives as one response: the entry is
// never admitted with a key that is gone, and still needs no read after
// the event. Two watches could deliver the two deletes in either order.
// When the scope does not hold the entry's own key (an RWMutex reader,
// which counts writers only), an event that would admit it is confirmed
// by a read of its own key with the keys ahead.
//
// Every watch starts at the current revision, never a past one (etcd
// serves those from a loop that runs every 100 ms), and a read then
// closes the gap between the read that chose it and the moment it
// started. That read, like every read of the window, is serializable
// (answered by one member, without a raft round) when the member has
// applied at least the revisions the watches started at, and
// linearizable otherwise: a state at least that new is good enough, as
// keys ahead only go away.

// Bounds of the pause before a wait tries again after a transient error.
const (
	retryMin = 20 * time.Millisecond
	retryMax = time.Second
)

// window is what is known of the keys in scope ahead of an entry: the
// nearest ones, newest first, less those whose delete was seen. complete
// means no other key in scope is ahead. (A read cannot learn more from
// etcd's Count: it counts before the create-revision filter.)
type window struct {
	keys     []*mvccpb.KeyValue
	complete bool
	rev      int64 // the revision of the read, join or event it comes from
}

// window keeps the n+1 nearest of kvs (newest first), read at revision
// rev with a limit of n+2.
func (q *Queue) window(kvs []*mvccpb.KeyValue, rev int64) window {
	if len(kvs) > q.n+1 {
		return window{keys: kvs[:q.n+1], rev: rev}
	}
	return window{keys: kvs, complete: true, rev: rev}
}

// Admitted reports whether the rule admitted the entry at the newest read
// or event, without a network call.
func (e *Entry) Admitted() bool { return e.ahead.complete && len(e.ahead.keys) < e.q.n }

// Wait blocks until the rule admits the entry, the entry ends, or ctx
// ends. It rides out transient errors (etcd between leaders): it pauses
// and starts again from a linearizable read. It must not be called
// concurrently with itself or Recheck.
func (e *Entry) Wait(ctx context.Context) error {
	w, stop := e.waiter(ctx)
	defer stop()
	return w.run()
}

// Recheck reads again whether the rule admits the entry, for a caller that
// confirms an admission after the fact. The read reflects at least the
// revision of the last read or event, so a key it shows ahead was ahead
// then too. It returns ErrGone, and ends the entry, if the key is gone.
func (e *Entry) Recheck(ctx context.Context) (admitted bool, err error) {
	if err := e.read(ctx, e.ahead.rev); err != nil {
		return false, err
	}
	return e.Admitted(), nil
}

// read is the one read of the window: the entry's own key and the n+2 keys
// in scope nearest ahead of it. A serializable read is enough when it
// reflects at least revision atLeast; otherwise, or when atLeast is 0, it
// reads linearizably. It ends the entry if its key is gone.
func (e *Entry) read(ctx context.Context, atLeast int64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if atLeast > 0 {
		// A member lagging behind the entry's own key would not show it
		// (a watch it serves can start, and even see deletes, below it).
		atLeast = max(atLeast, e.rev)
	}
	resp, err := e.get(ctx, atLeast > 0)
	if err == nil && atLeast > 0 && resp.Header.Revision < atLeast {
		resp, err = e.get(ctx, false)
	}
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return err
	}
	if own := resp.Responses[0].GetResponseRange().Kvs; len(own) == 0 || own[0].CreateRevision != e.rev {
		e.end(ErrGone)
		return ErrGone
	}
	e.ahead = e.q.window(resp.Responses[1].GetResponseRange().Kvs, resp.Header.Revision)
	return nil
}

func (e *Entry) get(ctx context.Context, serializable bool) (*clientv3.TxnResponse, error) {
	opts := []clientv3.OpOption{clientv3.WithKeysOnly()}
	if serializable {
		opts = append(opts, clientv3.WithSerializable())
	}
	ahead := append([]clientv3.OpOption{
		clientv3.WithPrefix(), clientv3.WithLimit(int64(e.q.n) + 2), clientv3.WithMaxCreateRev(e.rev - 1),
		clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortDescend),
	}, opts...)
	return e.q.cli.Txn(ctx).Then(clientv3.OpGet(e.key, opts...), clientv3.OpGet(e.q.scope, ahead...)).Commit()
}

// waiter is one Wait: the entry and the watches that follow its window.
type waiter struct {
	e        *Entry
	ctx      context.Context
	wctx     context.Context              // for watches: ends with ctx and the entry
	watching map[int64]context.CancelFunc // by the key's create revision, or frontWatch
	events   chan event
}

// waiter returns a waiter for one wait with ctx, and a function that
// stops its watches. Watches end with the wait: when it returns, ctx ends
// or the entry ends, so none can keep a call blocked on an unreachable
// etcd.
func (e *Entry) waiter(ctx context.Context) (*waiter, func()) {
	wctx, cancel := context.WithCancel(watchCtx)
	stopCtx := context.AfterFunc(ctx, cancel)
	stopEnded := context.AfterFunc(e.ended, cancel)
	w := &waiter{e: e, ctx: ctx, wctx: wctx, watching: map[int64]context.CancelFunc{}, events: make(chan event)}
	return w, func() {
		stopEnded()
		stopCtx()
		cancel()
	}
}

// errAdmitted ends the wait loop.
var errAdmitted = errors.New("admitted")

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
		if err := w.e.read(w.ctx, 0); err != nil && !etcderr.Transient(err) {
			return err
		}
	}
}

// pause waits before a wait tries again after err. It returns why the
// entry ended if it has (its end also ends the wait's watches, which can
// then fail first), err at once if ctx has ended or err is not transient,
// and the reason if either ends during the pause.
func (e *Entry) pause(ctx context.Context, err error, b *etcderr.Backoff) error {
	if end := e.Err(); end != nil {
		return end
	}
	if ctx.Err() != nil || !etcderr.Transient(err) {
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

// step brings the window up to date and waits for one change to it.
func (w *waiter) step() error {
	e := w.e
	if !e.ahead.complete && len(e.ahead.keys) < e.q.n+1 {
		// Deletes emptied a window that may not hold every key ahead.
		if err := w.refill(); err != nil {
			return err
		}
	}
	if e.Admitted() {
		return errAdmitted
	}
	if err := w.watchWindow(); err != nil {
		return err
	}
	if e.Admitted() {
		return errAdmitted
	}
	select {
	case ev := <-w.events:
		if _, ok := w.watching[ev.id]; !ok {
			return nil // from a watch stopped since: a read has replaced it
		}
		if ev.err != nil {
			return ev.err // a broken watch (no leader, compaction)
		}
		if ev.id != frontWatch {
			w.forget(ev.id)
			return nil
		}
		return w.deleted(ev.gone, ev.rev)
	case <-e.Done():
		return e.Err()
	case <-w.ctx.Done():
		return w.ctx.Err()
	}
}

// refill reads the window again after deletes emptied it. Usually the
// waiter has then come within n+1 of the front, so the front watch starts
// too, alongside the read, which then closes its gap as well; if the read
// shows more keys ahead than that, the front watch stops again.
func (w *waiter) refill() error {
	opened := make(chan watch, 1)
	go func() { opened <- w.open(w.e.q.scope, frontOpts...) }()
	err := w.e.read(w.ctx, 0)
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
	w.follow(frontWatch, wt)
	if w.e.ahead.rev < wt.rev {
		// Read before the watch started: a delete in between is in
		// neither.
		if err := w.e.read(w.ctx, wt.rev); err != nil {
			return err
		}
	}
	if !w.e.ahead.complete {
		w.unwatch(frontWatch)
	}
	w.prune()
	return nil
}

// watchWindow starts watches on window keys not yet watched, then reads
// again to close the gap: a key deleted before its watch started sent no
// event. It repeats while the read shows keys not yet watched. A complete
// window is watched by the front watch instead.
func (w *waiter) watchWindow() error {
	for {
		if w.e.ahead.complete {
			if _, ok := w.watching[frontWatch]; ok {
				return nil
			}
			started, err := w.start(frontWatch, w.e.q.scope, frontOpts...)
			if err != nil {
				return err
			}
			w.prune() // every key watch: the front watch sees their deletes
			// The window stays complete: keys ahead only go away.
			return w.e.read(w.ctx, started)
		}
		var started int64
		for _, kv := range w.e.ahead.keys {
			if _, ok := w.watching[kv.CreateRevision]; ok {
				continue
			}
			rev, err := w.start(kv.CreateRevision, string(kv.Key))
			if err != nil {
				return err
			}
			started = max(started, rev)
		}
		if started == 0 {
			return nil
		}
		if err := w.e.read(w.ctx, started); err != nil {
			return err
		}
		w.prune()
	}
}

// deleted applies one revision's deletes in scope: the entry's own key,
// which ends the entry, before keys ahead, which may admit it. A delete
// counts only for the key it ended, one created before it.
func (w *waiter) deleted(dels []deletion, rev int64) error {
	e := w.e
	gone := make(map[string]int64, len(dels)) // key -> revision of its delete
	for _, d := range dels {
		gone[d.key] = d.rev
	}
	ended := func(key string, created int64) bool {
		at, ok := gone[key]
		return ok && at > created
	}
	if ended(e.key, e.rev) {
		e.end(ErrGone)
		return ErrGone
	}
	ahead := e.ahead.keys[:0]
	for _, kv := range e.ahead.keys {
		if !ended(string(kv.Key), kv.CreateRevision) {
			ahead = append(ahead, kv)
		}
	}
	e.ahead.keys, e.ahead.rev = ahead, max(e.ahead.rev, rev)
	if e.Admitted() && !e.q.inScope(e.key) {
		// The front watch does not see the entry's own key: read it
		// with the keys ahead before admitting.
		return e.read(w.ctx, rev)
	}
	return nil
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
