package ratelimit

import (
	"context"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// leaseMargin is how long a bucket key outlives the moment its bucket is
// full again. The bucket would read as full from then on anyway, so the key
// can go: an expired key and a full bucket are the same state.
const leaseMargin = time.Second

// leases hands out the lease that bucket keys are written with.
//
// The lease is not kept alive and belongs to no instance's session: it is a
// timer that etcd runs. A key is only ever attached to a lease that lasts
// until its bucket is full again, so a key that vanishes, whether because
// its writer crashed or because nobody used it, is a full bucket. Whoever
// writes a key next moves it to their own lease. Close never revokes the
// lease: that would refill every bucket it holds.
type leases struct {
	cli *clientv3.Client
	sem chan struct{} // one grant at a time

	// Guarded by sem.
	id      clientv3.LeaseID
	expires time.Time // send time of the grant + granted TTL: etcd expires it no earlier
}

func newLeases(cli *clientv3.Client) *leases {
	return &leases{cli: cli, sem: make(chan struct{}, 1)}
}

// get returns a lease that etcd keeps for at least need + leaseMargin. A
// new lease lasts twice as long as the longest need under the limit (a
// full bucket's refill time), so it serves many writes before it is
// replaced.
func (ls *leases) get(ctx context.Context, need, refill time.Duration) (clientv3.LeaseID, error) {
	select {
	case ls.sem <- struct{}{}:
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	defer func() { <-ls.sem }()
	need += leaseMargin
	if ls.id != 0 && time.Until(ls.expires) >= need {
		return ls.id, nil
	}
	ttl := secondsCeil(2 * max(need, refill+leaseMargin))
	sent := time.Now()
	resp, err := ls.cli.Grant(ctx, ttl)
	if err != nil {
		return 0, fmt.Errorf("ratelimit: grant lease: %w", err)
	}
	// etcd may raise a short TTL to its minimum; it never lowers one.
	ls.id, ls.expires = resp.ID, sent.Add(time.Duration(resp.TTL)*time.Second)
	return ls.id, nil
}

// drop forgets id after etcd said it no longer exists.
func (ls *leases) drop(ctx context.Context, id clientv3.LeaseID) error {
	select {
	case ls.sem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	if ls.id == id {
		ls.id = 0
	}
	<-ls.sem
	return nil
}

func secondsCeil(d time.Duration) int64 {
	return int64((d + time.Second - 1) / time.Second)
}
