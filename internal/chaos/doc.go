// Package chaos is leasekit's fault suite: a nemesis that breaks a
// three-member embedded etcd cluster and the clients of it, workers that
// keep taking a lock (or an election) and doing guarded writes meanwhile,
// and checkers that decide from the recorded history whether anything
// went wrong.
//
// The tests of this package run the suite. In its short form they are part
// of `make test`; `make chaos` runs the long form (LEASEKIT_CHAOS_ROUNDS,
// 100 rounds by default there). LEASEKIT_CHAOS_SEED replays a schedule.
//
// What is checked, after every run:
//   - Writes: each guarded write puts a record of itself in the same
//     transaction as the counter it increments. Read back in commit
//     order, the records carry the counter values 1, 2, ..., n with no gap
//     or repeat (no lost update; the counter equals the number of
//     committed writes) and their fencing tokens never decrease. Every
//     write its client saw succeed is there, and nothing else is, except
//     writes whose outcome the client could not learn.
//   - Conflicts: a write whose lock guard still held in etcd but whose
//     counter had moved since the holder read it proves that two holders
//     overlapped. There must be none.
//   - History: acquisitions and ends of holds, as intervals of time, are
//     checked against a mutex model with porcupine (CheckMutex), and
//     against the stricter promise of a FIFO lock that holders follow each
//     other in token order (CheckTokenOrder).
//   - Run's duties: each term's duties under election.Run end before any
//     later term is known to have begun, unless the leader's lease was
//     revoked from outside (CheckDuties).
//   - Liveness: after each fault heals, every worker makes progress
//     (Progress), and no call outlives its context by more than a grace
//     period (Watchdog, which prints every goroutine's stack when one
//     does).
package chaos
