// Package etcdlock provides fair, fenced distributed locks on etcd: a
// mutex, a Semaphore and an RWMutex. Its API (DistributedLock, Lock,
// LockOptions and the lock Manager) is that of the architecture decision
// record "Use Distributed Lock Pattern", a design note outside this
// repository that leasekit started from, kept so that code written
// against it works unchanged.
//
// The most common use runs a critical section under a lock that stays
// alive while it runs:
//
//	locker, err := etcdlock.New(cli)
//	...
//	defer locker.Close()
//	m := etcdlock.NewManager(locker)
//	err = m.WithLock(ctx, "invoice/42", 10*time.Second, func(ctx context.Context) error {
//		// ctx is cancelled the moment the lock is lost.
//		return charge(ctx)
//	})
//
// How it works. Each acquisition puts one key under the lock's prefix,
// attached to an etcd lease; etcd's create revision orders the keys, and
// that order is the queue. Waiters are served first come, first served.
// A waiter watches only the keys right ahead of it, or, once it is near
// the front, the deletes in its queue (no thundering herd), and never
// polls. The waiter right behind the holder is admitted by the
// holder's delete event alone, without another round trip.
//
// Safety. A lock excludes other holders only from writes that check it: a
// holder can stall past its lease and still believe it holds the lock.
// Make etcd writes conditional on Lock.Guard, and pass Lock.Token (the
// key's create revision, which increases with every holder) to other
// systems as a fencing token. Lock.Done closes when the lock is released
// or lost; a lease that is about to expire is reported before etcd could
// expire it, so a holder is told before a waiter can be granted the lock
// by expiry.
//
// TTLs. etcd counts lease TTLs in whole seconds and silently raises a TTL
// below its minimum (1.5 × the election timeout: 2s by default). TTLs are
// rounded up, Lock.TTL reports what etcd granted, and a raise is logged.
// Without AutoRefresh, a lock expires after its TTL unless refreshed; with
// AutoRefresh, lease keepalives keep it until Release.
//
// Logging. A Locker logs through WithLogger's *zap.Logger, a no-op by
// default; every failure also reaches the caller as an error or through
// Lock.Done. At warn level: etcd raised a TTL to its minimum, a hold was
// lost (its name, token and cause), a lease's deadline passed without a
// keepalive. At debug level: a failed keepalive that will be retried.
package etcdlock
