// Package queue is the revision-ordered wait queue under every leasekit
// primitive: etcdlock's mutex, semaphore, readers and writers, and
// election's candidates.
//
// Each participant puts one key under the queue's prefix, attached to its
// lease. etcd gives every key a create revision, and that order is the
// queue. A Rule says when a participant is admitted: when fewer than N
// keys under its scope are ahead of it. A mutex or an election admits one
// (N = 1, the whole queue), a semaphore N, an RWMutex writer one, and an
// RWMutex reader counts only the writers ahead (N = 1, scope the writers'
// prefix):
//
//	q := queue.New(cli, prefix, queue.Rule{N: 1})
//	e, err := q.Join(ctx, key, value, ls)
//	if err == nil && !e.Admitted() {
//		err = e.Wait(ctx)
//	}
//
// Waiting never polls, and never falls into etcd's 100ms loop for
// "unsynced" watches that start at a past revision: every watch starts at
// the current revision, then one read closes the gap between the read
// that chose it and the moment it started (see wait.go).
package queue

import (
	"context"
	"errors"
	"fmt"
	"strings"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/leasekit/leasekit/internal/etcderr"
	"github.com/leasekit/leasekit/internal/lease"
)

// Errors Join, Wait and Done report.
var (
	// ErrGone means the entry's own key was deleted: by its lease expiring
	// or being revoked, or by another client.
	ErrGone = errors.New("queue key deleted")
	// ErrLeft means the entry was left through Leave or Close.
	ErrLeft = errors.New("queue entry left")
	// ErrAmbiguous means etcd did not say whether a write happened.
	ErrAmbiguous = errors.New("queue write outcome unknown")
	// ErrNoBranch is returned by JoinIf when no branch's conditions held.
	// Nothing was written.
	ErrNoBranch = errors.New("queue join conditions not met")
)

// Rule says when an entry is admitted: when fewer than N keys under Scope
// are ahead of it.
type Rule struct {
	// N is how many may be admitted at once; at least 1.
	N int
	// Scope is the prefix, within the queue's, of the keys that count;
	// empty for the whole queue.
	Scope string
}

// Queue is one revision-ordered queue: the keys under a prefix, admitted
// by a rule. It holds no state in memory, so making one is free; entries
// of queues with the same prefix and different rules share the keys.
type Queue struct {
	cli    *clientv3.Client
	prefix string
	n      int
	scope  string // rule.Scope, or prefix
}

// watchCtx carries the metadata of every watch a queue starts:
// clientv3.WithRequireLeader, so that a member cut off from its peers
// ends them instead of leaving them silent (etcd #8980). Watches with
// equal metadata share one stream per client. Each watch ends with its
// wait or its entry, never with this context.
var watchCtx = clientv3.WithRequireLeader(context.Background())

// New returns the queue of the keys under prefix, which admits an entry
// by rule.
func New(cli *clientv3.Client, prefix string, rule Rule) *Queue {
	scope := rule.Scope
	if scope == "" {
		scope = prefix
	}
	return &Queue{cli: cli, prefix: prefix, n: max(rule.N, 1), scope: scope}
}

// Prefix returns the prefix of the queue's keys.
func (q *Queue) Prefix() string { return q.prefix }

// Busy reports, by reading only, whether an entry that joined now would
// have to wait: N or more keys are under the rule's scope.
func (q *Queue) Busy(ctx context.Context) (bool, error) {
	resp, err := q.cli.Get(ctx, q.scope, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return false, err
	}
	return resp.Count >= int64(q.n), nil
}

// Join puts key in the queue with value, attached to ls, in one
// transaction that also reads the keys ahead, and returns its entry: it
// is Admitted at once if the rule admits it. The entry ends the moment ls
// ends, and watches its own key until then or Leave.
//
// If ctx ends or the call fails after etcd may have written the key, the
// error wraps ErrAmbiguous: the caller must see to the key (revoke its
// lease, or delete it later). If the key exists already, left from an
// earlier call whose outcome was unknown, Join deletes it and fails with
// ErrAmbiguous: the caller may try again under another key.
func (q *Queue) Join(ctx context.Context, key, value string, ls *lease.Lease) (*Entry, error) {
	e, _, err := q.JoinIf(ctx, key, value, ls, Terms{Branches: []Branch{{}}})
	return e, err
}

// A Branch is one way JoinIf may write an entry's key: when every
// comparison in If holds, the key is written, and Also runs after the
// key's write and the read of the keys ahead, in the same transaction.
type Branch struct {
	If   []clientv3.Cmp
	Also []clientv3.Op
}

// Terms are the conditions of JoinIf: the key is written under the first
// of Branches whose comparisons hold; if none holds, Else runs instead.
type Terms struct {
	Branches []Branch
	Else     []clientv3.Op
}

// Joined says how JoinIf went.
type Joined struct {
	// Branch is the index of the branch taken, or -1 if none was.
	Branch int
	// Responses holds the responses to that branch's Also, or to Else
	// when no branch was taken.
	Responses []*pb.ResponseOp
}

// JoinIf is Join under conditions, in one transaction: for holds whose
// admission depends on more than the queue, such as a semaphore's agreed
// limit. (The branches nest as etcd transactions in their Else, so a miss
// costs no extra round trip.) If no branch's comparisons hold, nothing is
// written and the error is ErrNoBranch.
func (q *Queue) JoinIf(ctx context.Context, key, value string, ls *lease.Lease, t Terms) (*Entry, Joined, error) {
	none := Joined{Branch: -1}
	if len(t.Branches) == 0 {
		return nil, none, fmt.Errorf("queue: JoinIf without branches")
	}
	e := q.newEntry(key, ls.Context())
	resp, err := q.joinTxn(ctx, key, value, ls, t).Commit()
	if err != nil {
		if !etcderr.Ambiguous(err) {
			return nil, none, err // refused: nothing was written
		}
		return nil, none, fmt.Errorf("%w: %w", ErrAmbiguous, err)
	}
	succeeded, resps := resp.Succeeded, resp.Responses
	for i := range t.Branches {
		if succeeded {
			e.rev = resp.Header.Revision
			kvs := resps[1].GetResponseRange().Kvs
			if len(kvs) > 0 && string(kvs[0].Key) == key {
				kvs = kvs[1:] // the new key itself
			}
			e.ahead = q.window(kvs, e.rev)
			e.start()
			return e, Joined{Branch: i, Responses: resps[2:]}, nil
		}
		if i < len(t.Branches)-1 {
			inner := resps[0].GetResponseTxn()
			succeeded, resps = inner.Succeeded, inner.Responses
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

// joinTxn is JoinIf's transaction: "if key is absent and the branch's
// comparisons hold, put key, read the newest keys in scope and run the
// branch's ops", each branch nested in the Else of the one before, and
// last "read key and run t.Else".
func (q *Queue) joinTxn(ctx context.Context, key, value string, ls *lease.Lease, t Terms) clientv3.Txn {
	// The new key is the newest in the queue, so the newest keys in scope
	// (less the key itself) are the nearest ahead of it; one more than the
	// window tells whether the window holds them all.
	limit := q.n + 2
	if q.inScope(key) {
		limit++
	}
	newest := clientv3.OpGet(q.scope, clientv3.WithPrefix(), clientv3.WithKeysOnly(), clientv3.WithLimit(int64(limit)),
		clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortDescend))
	absent := clientv3.Compare(clientv3.CreateRevision(key), "=", 0)
	next := append([]clientv3.Op{clientv3.OpGet(key, clientv3.WithKeysOnly())}, t.Else...)
	var top clientv3.Op
	for i := len(t.Branches) - 1; i >= 0; i-- {
		b := t.Branches[i]
		then := append([]clientv3.Op{clientv3.OpPut(key, value, clientv3.WithLease(ls.ID())), newest}, b.Also...)
		top = clientv3.OpTxn(append([]clientv3.Cmp{absent}, b.If...), then, next)
		next = []clientv3.Op{top}
	}
	cmps, then, els := top.Txn()
	return q.cli.Txn(ctx).If(cmps...).Then(then...).Else(els...)
}

// inScope reports whether key counts for the rule.
func (q *Queue) inScope(key string) bool { return strings.HasPrefix(key, q.scope) }
