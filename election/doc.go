// Package election elects one leader among the replicas of a service
// through etcd, runs the leader's duties, and hands over at once.
//
// The most common use is Run: each replica runs the same code, and at any
// moment at most one of them is inside OnStartedLeading.
//
//	e, err := election.New(cli, "billing-cron",
//		election.WithTTL(5*time.Second), election.WithValue(podName))
//	if err != nil {
//		return err
//	}
//	return e.Run(ctx, election.Callbacks{
//		OnStartedLeading: func(ctx context.Context) {
//			// Leader duties. ctx ends the moment leadership is lost.
//			// Writes to etcd go through e.Txn, so that they fail once it
//			// is; e.Rev() is a fencing token for other systems.
//			runCron(ctx, e.Rev())
//		},
//		OnNewLeader: func(l election.Leader) { log.Printf("leader: %q", l.Value) },
//	})
//
// Candidates are served in the order they campaigned. A waiting candidate
// watches only the nearest keys ahead of it, from the current revision,
// so when a leader resigns the next leads within a millisecond or two
// (one delete and one watch event), not after etcd's
// 100ms catch-up loop for watches that start in the past, which
// concurrency.Election can wait for. When the leader's process dies, the
// next leads after the TTL (WithTTL).
//
// What it guarantees beyond etcd's concurrency.Election:
//
//   - A leader learns of a loss before any other candidate can win: the
//     lease counts as lost a margin before the earliest time etcd could
//     expire it, and the duties' context is cancelled then.
//   - A candidate whose lease dies or whose key is deleted while it
//     waits gets an error wrapping ErrLost, instead of a win with a key
//     that is gone (etcd #11051), also when the key is deleted in the
//     very revision of the handover.
//   - Observe reports "no leader" (the zero Leader), resumes after a
//     broken or compacted watch, and never reports a stale leader after a
//     reconnect.
//   - Rev, the term, strictly increases from leader to leader and works
//     as a fencing token; Txn and Guard make etcd writes conditional on
//     still leading.
//   - Healthy and HealthHandler report a leader whose renewals are
//     overdue, for liveness probes.
//
// etcd counts lease TTLs in whole seconds and raises TTLs below its
// minimum (2s by default) without saying so; TTL reports what was granted.
//
// # Logging
//
// An Election logs through WithLogger's *zap.Logger, a no-op by default;
// what matters also reaches the caller as an error, a callback or Done.
// At error level: Run gives up because etcd refused a campaign for good
// (permission denied, bad credentials). At warn level: etcd raised the
// TTL, a term was lost (its duties cancelled), Run retries a failed
// campaign, a win came with a key that was already gone, Resign failed,
// a lease's deadline passed without a keepalive. At debug level: wins and
// resignations, and retried waits, keepalives and Observe reads.
package election
