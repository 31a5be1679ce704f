package benchkit

import (
	"context"
	"errors"
	"strconv"
	"sync"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// IdealMutex is a yardstick: the fastest FIFO lock that etcd allows,
// measured under the same workload as a real one. It makes only the etcd
// calls that any lock of keys and watches must make for every hold, and
// learns everything else in memory, where a real lock needs reads.
//
// A take puts the worker's key (lining up: one committed put) and waits
// until the key ahead of it is deleted; a release deletes the key (one
// committed delete). One watch, opened when the workers are set up, sees
// every delete and admits the next in line in this process, so a handoff
// is exactly a committed delete and its watch event, and no take opens a
// watch or reads. It excludes and guards nothing.
//
// The workers of one crew share one queue in memory, from the first
// Worker call until the crew closes.
func IdealMutex() Impl {
	var mu sync.Mutex
	var cur *ring
	n := 0
	return Impl{Name: "ideal", Worker: func(cli *clientv3.Client, prefix string) (Take, func(), error) {
		mu.Lock()
		defer mu.Unlock()
		n++
		key := prefix + "key-" + strconv.Itoa(n)
		if cur != nil {
			r := cur
			return func(ctx context.Context, _ bool) (Release, error) { return r.take(ctx, cli, key) }, nil, nil
		}
		r, err := newRing(cli, prefix)
		if err != nil {
			return nil, nil, err
		}
		cur = r
		closeFn := func() {
			mu.Lock()
			cur = nil
			mu.Unlock()
			r.close()
		}
		return func(ctx context.Context, _ bool) (Release, error) { return r.take(ctx, cli, key) }, closeFn, nil
	}}
}

// ring is IdealMutex's queue in memory, fed by one watch of the keys'
// deletes.
type ring struct {
	mu    sync.Mutex
	queue []*node // in the order the puts committed; the head holds
	stop  context.CancelFunc
	done  chan struct{}
}

type node struct {
	key   string
	rev   int64         // the revision of its put
	admit chan struct{} // closed when the key ahead is deleted
}

// newRing starts the watch of every delete under prefix, from now.
func newRing(cli *clientv3.Client, prefix string) (*ring, error) {
	ctx, cancel := context.WithCancel(context.Background())
	wch := cli.Watch(ctx, prefix, clientv3.WithPrefix(), clientv3.WithFilterPut(), clientv3.WithCreatedNotify())
	if wr, ok := <-wch; !ok || !wr.Created {
		cancel()
		return nil, errors.Join(errors.New("benchkit: ideal: watch not created"), wr.Err())
	}
	r := &ring{stop: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		for wr := range wch {
			for _, ev := range wr.Events {
				if ev.Type == mvccpb.DELETE {
					r.deleted(string(ev.Kv.Key), ev.Kv.ModRevision)
				}
			}
		}
	}()
	return r, nil
}

func (r *ring) close() {
	r.stop()
	<-r.done
}

// deleted admits the next in line when the head's key is deleted.
func (r *ring) deleted(key string, rev int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.queue) == 0 || r.queue[0].key != key || r.queue[0].rev >= rev {
		return
	}
	r.queue = r.queue[1:]
	if len(r.queue) > 0 {
		close(r.queue[0].admit)
	}
}

func (r *ring) take(ctx context.Context, cli *clientv3.Client, key string) (Release, error) {
	resp, err := cli.Put(ctx, key, "")
	if err != nil {
		return nil, err
	}
	me := &node{key: key, rev: resp.Header.Revision, admit: make(chan struct{})}
	r.mu.Lock()
	// Puts commit in revision order, but their responses may not arrive in
	// it: keep the queue sorted.
	i := len(r.queue)
	for i > 0 && r.queue[i-1].rev > me.rev {
		i--
	}
	if i == 0 && len(r.queue) > 0 {
		// Committed before the holder's put but answered after the holder
		// was admitted: go behind it.
		i = 1
	}
	r.queue = append(r.queue[:i], append([]*node{me}, r.queue[i:]...)...)
	if i == 0 {
		close(me.admit)
	}
	r.mu.Unlock()
	select {
	case <-me.admit:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return func(ctx context.Context) error {
		_, err := cli.Delete(ctx, key)
		return err
	}, nil
}
