package etcdlock

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// SemaphoreInfo is the state of one semaphore's queue, as
// InspectSemaphore reports it.
type SemaphoreInfo struct {
	// Limit is how many holders the semaphore admits: the limit stored in
	// etcd or, with none stored, the one its queued keys agreed on. It is
	// 0 when nobody holds or waits and no limit is stored. A limit stored
	// while nobody holds or waits is what the last users agreed on; it
	// binds nobody (see Semaphore).
	Limit int
	// Holders hold permits, in token order.
	Holders []Entry
	// Waiters are waiting, in the order they will be served.
	Waiters []Entry
}

// InspectSemaphore reads the holders and waiters of the semaphore name
// with one linearizable read. Unlike Semaphore, it needs no limit: it
// reports the one stored in etcd.
func (l *Locker) InspectSemaphore(ctx context.Context, name string) (SemaphoreInfo, error) {
	base, err := l.shapeBase(semSegment, name)
	if err != nil {
		return SemaphoreInfo{}, err
	}
	done, err := l.call(fmt.Sprintf("inspect semaphore %q", name))
	if err != nil {
		return SemaphoreInfo{}, err
	}
	defer done()
	queuePrefix := base + "q/"
	resp, err := l.cli.Txn(ctx).Then(
		clientv3.OpGet(base+"n"),
		clientv3.OpGet(queuePrefix, clientv3.WithPrefix(),
			clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortAscend)),
	).Commit()
	if err != nil {
		return SemaphoreInfo{}, fmt.Errorf("etcdlock: inspect semaphore %q: %w", name, err)
	}
	var info SemaphoreInfo
	if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) > 0 {
		info.Limit, _ = strconv.Atoi(string(kvs[0].Value))
	}
	queued := resp.Responses[1].GetResponseRange().Kvs
	if info.Limit == 0 && len(queued) > 0 {
		info.Limit, _ = strconv.Atoi(limitOf(string(queued[0].Key)))
	}
	for i, kv := range queued {
		e := Entry{EtcdKey: string(kv.Key), Token: kv.CreateRevision, LeaseID: kv.Lease}
		_ = json.Unmarshal(kv.Value, &e.Metadata)
		if i < info.Limit {
			info.Holders = append(info.Holders, e)
		} else {
			info.Waiters = append(info.Waiters, e)
		}
	}
	return info, nil
}
