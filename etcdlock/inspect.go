package etcdlock

import (
	"context"
	"encoding/json"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Entry is one key in a lock's queue, as Inspect reports it.
type Entry struct {
	// EtcdKey is the key in etcd, for etcdctl.
	EtcdKey string
	// Token is the key's create revision: the fencing token it holds or
	// will hold.
	Token int64
	// LeaseID is the etcd lease the key is attached to.
	LeaseID int64
	// Metadata is what the holder stored: "host", "pid" and its own fields.
	Metadata map[string]string
}

// Info is the state of one lock's queue.
type Info struct {
	// Holder is the current holder, or nil if the lock is free.
	Holder *Entry
	// Waiters are the callers waiting, in the order they will be served.
	Waiters []Entry
}

// Inspect reads the holder and the waiters of the lock name with one
// linearizable read. It ends when ctx ends or the Locker closes.
func (l *Locker) Inspect(ctx context.Context, name string) (Info, error) {
	prefix, err := l.shapeBase("", name)
	if err != nil {
		return Info{}, err
	}
	done, err := l.call(fmt.Sprintf("inspect %q", name))
	if err != nil {
		return Info{}, err
	}
	defer done()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(l.ctx, cancel)()
	resp, err := l.cli.Get(ctx, prefix, append(clientv3.WithFirstCreate(), clientv3.WithLimit(0))...)
	if err != nil {
		return Info{}, fmt.Errorf("etcdlock: inspect %q: %w", name, err)
	}
	var info Info
	for i, kv := range resp.Kvs {
		e := Entry{EtcdKey: string(kv.Key), Token: kv.CreateRevision, LeaseID: kv.Lease}
		// Metadata a foreign writer left unreadable is reported empty.
		_ = json.Unmarshal(kv.Value, &e.Metadata)
		if i == 0 {
			info.Holder = &e
			continue
		}
		info.Waiters = append(info.Waiters, e)
	}
	return info, nil
}
