package queue

import (
	"context"
	"errors"
	"fmt"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/leasekit/leasekit/internal/etcderr"
)

// ErrNoBranch is returned by JoinFirst when no branch's conditions held.
// Nothing was written.
var ErrNoBranch = errors.New("queue join conditions not met")

// A Branch is one way JoinFirst may write an entry's key: when every
// comparison in If holds, the key is written, and Also runs after the
// key's write and the read of the newest keys, in the same transaction.
type Branch struct {
	If   []clientv3.Cmp
	Also []clientv3.Op
}

// Joined says how JoinFirst went.
type Joined struct {
	// Branch is the index of the branch taken, or -1 if none was.
	Branch int
	// Responses holds the responses to that branch's Also, or to JoinFirst's
	// els when no branch was taken.
	Responses []*pb.ResponseOp
}

// JoinFirst is Join under conditions, in one transaction: the key is
// written under the first branch whose comparisons hold, together with
// that branch's ops. (The branches nest as etcd transactions in their
// Else, so a miss costs no extra round trip.) If none holds, nothing is
// written, els run instead, and the error is ErrNoBranch.
//
// It is for holds whose admission depends on more than the queue: a
// semaphore's agreed size, or a reader's look at the writers ahead.
func JoinFirst(ctx, watchCtx context.Context, cli *clientv3.Client, prefix, key, value string,
	lease clientv3.LeaseID, n int, lost context.Context, branches []Branch, els ...clientv3.Op) (*Entry, Joined, error) {
	e := newEntry(cli, prefix, key, value, lease)
	none := Joined{Branch: -1}
	if len(branches) == 0 {
		return nil, none, fmt.Errorf("queue: JoinFirst without branches")
	}
	newest := []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithLimit(int64(n) + 3),
		clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortDescend)}
	absent := clientv3.Compare(clientv3.CreateRevision(key), "=", 0)
	// Build from the last branch outwards: each one is the Else of the one
	// before it.
	elseOps := append([]clientv3.Op{clientv3.OpGet(key)}, els...)
	var top clientv3.Op
	for i := len(branches) - 1; i >= 0; i-- {
		b := branches[i]
		cmps := append([]clientv3.Cmp{absent}, b.If...)
		then := append([]clientv3.Op{
			clientv3.OpPut(key, value, clientv3.WithLease(lease)), clientv3.OpGet(prefix, newest...),
		}, b.Also...)
		top = clientv3.OpTxn(cmps, then, elseOps)
		elseOps = []clientv3.Op{top}
	}
	cmps, then, els0 := top.Txn()
	resp, err := cli.Txn(ctx).If(cmps...).Then(then...).Else(els0...).Commit()
	if err != nil {
		if !etcderr.Ambiguous(err) {
			return nil, none, err // refused: nothing was written
		}
		// The put may have been applied, or may yet be: the caller must
		// see to the key (revoke its lease, or delete it later).
		return nil, none, fmt.Errorf("%w: %w", ErrAmbiguous, err)
	}
	rev := resp.Header.Revision
	succeeded, resps := resp.Succeeded, resp.Responses
	for i := range branches {
		if succeeded {
			e.rev = rev
			rng := resps[1].GetResponseRange()
			// The new key is the newest in the queue, so it is first in rng.
			e.ahead = newWindow(rng.Kvs[1:], n, rev)
			e.start(watchCtx, lost)
			return e, Joined{Branch: i, Responses: resps[2:]}, nil
		}
		if i < len(branches)-1 {
			t := resps[0].GetResponseTxn()
			succeeded, resps = t.Succeeded, t.Responses
		}
	}
	if len(resps[0].GetResponseRange().Kvs) > 0 {
		// The key is ours, left by an earlier call whose outcome was
		// unknown: delete it so that the caller can try again.
		e.removeDetached()
		return nil, none, fmt.Errorf("%w: key %q already exists", ErrAmbiguous, key)
	}
	return nil, Joined{Branch: -1, Responses: resps[1:]}, ErrNoBranch
}
