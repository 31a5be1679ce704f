package etcdlock

import (
	"context"
	"encoding/json"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// ForceUnlock breaks the lock name for a holder that is dead or stuck:
// it deletes exactly the holder's key, in a transaction guarded by the
// key's create revision, so that it can never delete the key of a holder
// that took the lock in the meantime. It leaves the holder's lease alone,
// so other locks on the same lease (a Locker's AutoRefresh locks share
// one) stay held. It returns the hold it broke.
//
// If token is not 0, only the hold with that token is broken: when the
// lock has been released and taken again since, or is free, ForceUnlock
// deletes nothing and returns an error wrapping ErrNotHeld. With token 0
// it breaks whichever hold it finds, and returns an error wrapping
// ErrNotHeld if the lock is free or the hold it found ended before the
// delete.
//
// What the holder sees: a leasekit holder's Done closes at once, its Err
// wraps ErrLockLost ("key deleted") and its guarded writes fail; Manager
// cancels its fn's context. A holder through etcd's concurrency.Mutex or
// etcdctl lock is not told: only its writes guarded by its key fail. The
// first waiter, if any, holds the lock at once.
func (l *Locker) ForceUnlock(ctx context.Context, name string, token int64) (Entry, error) {
	k, err := l.mutex(name)
	if err != nil {
		return Entry{}, err
	}
	done, err := l.call(fmt.Sprintf("force unlock %q", name))
	if err != nil {
		return Entry{}, err
	}
	defer done()
	resp, err := l.cli.Get(ctx, k.keys, clientv3.WithFirstCreate()...)
	if err != nil {
		return Entry{}, fmt.Errorf("etcdlock: force unlock %q: %w", name, err)
	}
	if len(resp.Kvs) == 0 {
		return Entry{}, fmt.Errorf("etcdlock: force unlock %q: %w: the lock is free", name, ErrNotHeld)
	}
	kv := resp.Kvs[0]
	e := Entry{EtcdKey: string(kv.Key), Token: kv.CreateRevision, LeaseID: kv.Lease}
	_ = json.Unmarshal(kv.Value, &e.Metadata)
	if token != 0 && e.Token != token {
		return e, fmt.Errorf("etcdlock: force unlock %q: %w: token %d does not hold it (token %d does)",
			name, ErrNotHeld, token, e.Token)
	}
	// Keys ahead of a holder only ever go away, so a key that still has
	// the create revision read above is still the holder.
	tresp, err := l.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(e.EtcdKey), "=", e.Token)).
		Then(clientv3.OpDelete(e.EtcdKey)).Commit()
	if err != nil {
		return e, fmt.Errorf("etcdlock: force unlock %q: %w", name, err)
	}
	if !tresp.Succeeded {
		return e, fmt.Errorf("etcdlock: force unlock %q: %w: token %d ended before the delete", name, ErrNotHeld, e.Token)
	}
	return e, nil
}

// KeyPrefix returns the etcd key prefix of the lock name's queue, ending
// in '/': the Locker's prefix and the name, with '%', '/' and bytes that
// are not printable ASCII percent-encoded ("tenant/acme" under the
// default prefix is "/leasekit/lock/tenant%2Facme/"). It touches nothing
// in etcd.
//
// Interoperation with etcd's own mutex is guaranteed: a leasekit mutex
// and etcd's concurrency.Mutex or `etcdctl lock` on the same queue
// exclude each other, in both directions, because all of them let the key
// with the lowest create revision under the prefix hold. etcd's mutex
// adds the '/' itself, so give it the prefix without it:
//
//	concurrency.NewMutex(session, strings.TrimSuffix(p, "/"))
//	etcdctl lock /leasekit/lock/tenant%2Facme -- cmd
//
// A fleet can so move from etcdctl lock or concurrency.Mutex to leasekit
// one replica at a time. Waiters of either kind are served in the order
// they queued. A concurrency.Mutex holder is not told of a loss, and its
// key holds no metadata (Inspect reports none).
func (l *Locker) KeyPrefix(name string) (string, error) {
	k, err := l.mutex(name)
	if err != nil {
		return "", err
	}
	return k.keys, nil
}
