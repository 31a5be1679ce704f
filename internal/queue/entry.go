package queue

import (
	"context"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/leasekit/leasekit/internal/etcderr"
)

// SelfWatchDelay is how long an entry waits before it watches its own key
// for deletes by others. A delete in that time is still seen, just later.
const SelfWatchDelay = 25 * time.Millisecond

// Entry is one participant's key in a queue. It ends when its key is
// deleted, its lease is lost, or it is left (Leave, Close); Done is
// closed then and Err says why.
type Entry struct {
	q   *Queue
	key string
	rev int64

	// ahead is what Join and Wait know of the keys ahead.
	ahead window

	// ended is cancelled when the entry ends. The self-watch starts from
	// timer, so short entries never start it; stopped is closed once it
	// has stopped or will never start. unbind stops the lease's end from
	// ending the entry.
	ended     context.Context
	endCancel context.CancelFunc
	lost      context.Context // ends the entry: the lease's, until Rebind
	timer     *time.Timer
	stopped   chan struct{}
	stopOnce  sync.Once

	mu       sync.Mutex
	err      error
	afterEnd func(error)
	unbind   func() bool
}

// newEntry is the entry of key, which lost ends once it is started.
func (q *Queue) newEntry(key string, lost context.Context) *Entry {
	e := &Entry{q: q, key: key, lost: lost, stopped: make(chan struct{})}
	e.ended, e.endCancel = context.WithCancel(context.Background())
	return e
}

// start arms the entry once its key is written: the lease's end ends it
// at once, and after SelfWatchDelay a goroutine watches its key.
func (e *Entry) start() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.unbind = context.AfterFunc(e.lost, func() { e.end(ErrGone) })
	// Most holds and waits are short. Starting the watch a little later
	// keeps them from paying for it, and loses nothing: it starts at the
	// key's own revision, so it still sees any delete since.
	e.timer = time.AfterFunc(SelfWatchDelay, e.watchSelf)
}

// Key returns the entry's etcd key.
func (e *Entry) Key() string { return e.key }

// Rev returns the entry's create revision: its place in the queue and its
// fencing token.
func (e *Entry) Rev() int64 { return e.rev }

// Guard returns a comparison that holds while the entry's key exists.
func (e *Entry) Guard() clientv3.Cmp {
	return clientv3.Compare(clientv3.CreateRevision(e.key), "=", e.rev)
}

// Done is closed when the entry ends: its key was deleted, its lease was
// lost, or Leave or Close was called.
func (e *Entry) Done() <-chan struct{} { return e.ended.Done() }

// Context returns a context that ends when the entry ends.
func (e *Entry) Context() context.Context { return e.ended }

// Err returns why Done was closed, or nil while it is open.
func (e *Entry) Err() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.err
}

// Lose ends the entry with err, as a loss of its key would, without
// touching the key: for a caller that can no longer tell whether the key
// is still its own.
func (e *Entry) Lose(err error) { e.end(err) }

func (e *Entry) end(err error) {
	e.mu.Lock()
	if e.err != nil {
		e.mu.Unlock()
		return
	}
	e.err = err
	e.endCancel()
	if e.unbind != nil {
		e.unbind() // a shared lease must not keep a callback per ended entry
	}
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

// Rebind makes lost, instead of the lease given to Join, end the entry:
// for a key moved to another lease.
func (e *Entry) Rebind(lost context.Context) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.err != nil {
		return
	}
	e.unbind()
	e.unbind = context.AfterFunc(lost, func() { e.end(ErrGone) })
}

// Leave stops watching the key and deletes it if it is still this entry's.
// It returns ErrGone if the key was already gone. If the delete fails, the
// key may remain: Leave can be called again.
func (e *Entry) Leave(ctx context.Context) error {
	// Let the self-watch stop while the delete is on its way.
	e.end(ErrLeft)
	defer e.stop()()
	resp, err := e.q.cli.Txn(ctx).If(e.Guard()).Then(clientv3.OpDelete(e.key)).Commit()
	if err != nil {
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
	e.stop()()
}

// stop ends the self-watch, or keeps it from starting, and returns a
// function that waits until it has stopped.
func (e *Entry) stop() (wait func()) {
	e.mu.Lock()
	unbind, timer := e.unbind, e.timer
	e.mu.Unlock()
	if unbind != nil {
		unbind()
	}
	if timer == nil || timer.Stop() {
		// It never started, and now never will.
		e.stopOnce.Do(func() { close(e.stopped) })
	}
	return func() { <-e.stopped }
}

// removeDetached deletes the key if it is this entry's, with a context of
// its own: the caller's may be gone.
func (e *Entry) removeDetached() {
	if e.q.cli.Ctx().Err() != nil {
		return // a closed client cannot delete anything
	}
	ctx, cancel := etcderr.Cleanup(context.Background())
	defer cancel()
	cmp := clientv3.Compare(clientv3.CreateRevision(e.key), "!=", 0)
	if e.rev != 0 {
		cmp = e.Guard()
	}
	e.q.cli.Txn(ctx).If(cmp).Then(clientv3.OpDelete(e.key)).Commit()
}

// watchSelf watches the entry's own key from its create revision on, so
// that no delete can slip by, until the key goes or the entry ends.
func (e *Entry) watchSelf() {
	defer e.stopOnce.Do(func() { close(e.stopped) })
	// Every watch made here ends with ctx, and ctx ends with the entry, so
	// a call blocked on an unreachable etcd returns at once.
	ctx, cancel := context.WithCancel(watchCtx)
	defer cancel()
	defer context.AfterFunc(e.ended, cancel)()

	retry := time.NewTimer(0)
	defer retry.Stop()
	var wch clientv3.WatchChan // nil, so never ready, until started
	next := e.rev + 1
	for {
		select {
		case <-ctx.Done():
			return
		case <-retry.C:
			if next == 0 {
				// History was compacted away: ask whether the key exists.
				if next = e.stillThere(ctx); next == 0 {
					continue // gone (the entry ended) or ctx ended
				}
			}
			wch = e.q.cli.Watch(ctx, e.key, clientv3.WithRev(next))
		case wr, ok := <-wch:
			switch {
			case !ok || wr.Err() != nil && wr.CompactRevision == 0:
				if e.hopeless(wr.Err()) {
					return
				}
				// The stream broke (no leader, say): start again where
				// it stopped, soon.
				wch = nil
				retry.Reset(50 * time.Millisecond)
				continue
			case wr.CompactRevision != 0:
				wch, next = nil, 0
				retry.Reset(0)
				continue
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
}

// stillThere checks the key after its watch lost history to a compaction.
// It returns the revision to watch from, or 0 if the key is gone (the entry
// then ends), ctx ended, or asking again cannot help: the client is closed
// or etcd refuses the read (permission denied). Other errors are retried
// with a growing pause.
func (e *Entry) stillThere(ctx context.Context) int64 {
	b := etcderr.Backoff{Min: retryMin, Max: retryMax}
	for {
		resp, err := e.q.cli.Get(ctx, e.key)
		if err == nil {
			if len(resp.Kvs) == 0 || resp.Kvs[0].CreateRevision != e.rev {
				e.end(ErrGone)
				return 0
			}
			return resp.Header.Revision + 1
		}
		if ctx.Err() != nil || e.hopeless(err) || b.Wait(ctx) != nil {
			return 0
		}
	}
}

// hopeless reports whether a read or watch that failed with err would
// fail again however often it is retried: the client is closed, or etcd
// refuses it. The self-watch then stops; the entry still ends with its
// lease, but a delete of its key by another client goes unseen.
func (e *Entry) hopeless(err error) bool {
	return e.q.cli.Ctx().Err() != nil || etcderr.Refused(err)
}
