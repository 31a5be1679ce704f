package election

import (
	"context"
	"errors"
	"slices"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/leasekit/leasekit/internal/etcderr"
)

// Observe reports the leader of the election: first the current one, then
// every change, in order. A change is a new leader, a new value
// proclaimed by the leader, or nobody leading, which is reported as the
// zero Leader. The channel is closed when ctx ends; read it until then,
// as Observe waits for each value to be received before it looks for the
// next.
//
// Observe follows the election with one watch from the revision it last
// read, so it misses no change in between. When the watch breaks (the
// member lost its leader, the history it needs was compacted) it reads
// the election again with a linearizable read before it reports
// anything. When the connection drops, clientv3 resumes the watch by
// itself from where it stopped, and etcd then sends everything it missed
// at once, behind the current revision; Observe recognises that catch-up
// and reads the election again instead of replaying it. So it never
// reports a leader that was already gone when it reconnected; changes
// that happened while it was cut off and are no longer current are
// skipped.
//
// While cut off from etcd Observe reports nothing: the last value it sent
// stands, however stale, until etcd answers again. A blackholed
// connection is noticed only by gRPC keepalive pings, if the client sends
// them (clientv3.Config.DialKeepAliveTime). To act on who leads, ask
// Leader with a deadline, or use Txn and Guard.
func (e *Election) Observe(ctx context.Context) <-chan Leader {
	ch := make(chan Leader)
	go e.observe(ctx, ch)
	return ch
}

// candidate is a key in line, as Observe knows it.
type candidate struct {
	key   string
	value string
	rev   int64 // create revision
}

// observer is the line of candidates at one revision.
type observer struct {
	e        *Election
	ch       chan<- Leader
	line     []candidate // by create revision
	last     Leader
	reported bool
}

func (e *Election) observe(ctx context.Context, ch chan<- Leader) {
	defer close(ch)
	o := &observer{e: e, ch: ch}
	wctx := clientv3.WithRequireLeader(ctx)
	b := etcderr.Backoff{Min: retryFirst, Max: retryLast}
	for {
		rev, err := o.load(ctx)
		if err == nil {
			if !o.report(ctx) {
				return
			}
			var progressed bool
			progressed, err = o.follow(ctx, wctx, rev+1)
			if progressed {
				b.Reset()
			}
		}
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, errBehind) {
			// Not a failure: read again at once.
			e.lg.Debug("observe: the watch fell behind; reading the election again")
			continue
		}
		e.lg.Debug("observe: reading the election again", zap.Error(err), zap.Duration("in", b.Delay()))
		if b.Wait(ctx) != nil {
			return
		}
	}
}

// load reads every candidate with a linearizable read and returns its
// revision.
func (o *observer) load(ctx context.Context) (int64, error) {
	resp, err := o.e.cli.Get(ctx, o.e.queue, clientv3.WithPrefix(),
		clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortAscend))
	if err != nil {
		return 0, err
	}
	o.line = o.line[:0]
	for _, kv := range resp.Kvs {
		o.line = append(o.line, candidate{key: string(kv.Key), value: string(kv.Value), rev: kv.CreateRevision})
	}
	return resp.Header.Revision, nil
}

// follow applies watch events from revision from on, reporting after each
// revision, until the watch breaks or falls behind, or ctx ends. It
// reports whether any event arrived.
func (o *observer) follow(ctx, wctx context.Context, from int64) (progressed bool, err error) {
	wctx, cancel := context.WithCancel(wctx)
	defer cancel()
	wch := o.e.cli.Watch(wctx, o.e.queue, clientv3.WithPrefix(), clientv3.WithRev(from))
	for wr := range wch {
		if err := wr.Err(); err != nil {
			return progressed, err
		}
		if wr.Canceled {
			return progressed, errWatchClosed
		}
		if behind(wr) {
			return true, errBehind
		}
		for i, ev := range wr.Events {
			progressed = true
			o.apply(ev)
			// The events of one transaction share a revision; report the
			// state after all of them, never one in between.
			if i+1 < len(wr.Events) && wr.Events[i+1].Kv.ModRevision == ev.Kv.ModRevision {
				continue
			}
			if !o.report(ctx) {
				return progressed, ctx.Err()
			}
		}
	}
	return progressed, errWatchClosed
}

type watchClosed struct{}

func (watchClosed) Error() string { return "election: observe: watch closed" }

var errWatchClosed error = watchClosed{}

type watchBehind struct{}

func (watchBehind) Error() string { return "election: observe: watch behind" }

var errBehind error = watchBehind{}

// behind reports whether wr carries events that are not the newest
// change: etcd sends a change as it commits in a response of its own,
// whose header revision is the change's, but sends what a watch that
// started in the past missed (a watch clientv3 resumed after a broken
// connection, or one opened behind the current revision) in one response
// with the current revision in its header. The states in between were
// current only while the watcher could not see them.
func behind(wr clientv3.WatchResponse) bool {
	if len(wr.Events) == 0 {
		return false
	}
	first, last := wr.Events[0].Kv.ModRevision, wr.Events[len(wr.Events)-1].Kv.ModRevision
	return first != last || last != wr.Header.Revision
}

func (o *observer) apply(ev *clientv3.Event) {
	key := string(ev.Kv.Key)
	i := slices.IndexFunc(o.line, func(c candidate) bool { return c.key == key })
	if ev.Type == mvccpb.DELETE {
		if i >= 0 {
			o.line = slices.Delete(o.line, i, i+1)
		}
		return
	}
	if i >= 0 && o.line[i].rev == ev.Kv.CreateRevision {
		o.line[i].value = string(ev.Kv.Value)
		return
	}
	if i >= 0 {
		o.line = slices.Delete(o.line, i, i+1)
	}
	// A new key has the newest create revision of all: it goes last.
	o.line = append(o.line, candidate{key: key, value: string(ev.Kv.Value), rev: ev.Kv.CreateRevision})
}

// report sends the leader if it differs from the last one sent. It
// returns false if ctx ended first.
func (o *observer) report(ctx context.Context) bool {
	var l Leader
	if len(o.line) > 0 {
		l = Leader{Value: o.line[0].value, Rev: o.line[0].rev}
	}
	if o.reported && l == o.last {
		return true
	}
	select {
	case o.ch <- l:
		o.last, o.reported = l, true
		return true
	case <-ctx.Done():
		return false
	}
}
