// Package benchkit is leasekit's one harness for comparing its primitives
// with etcd's own recipes: the benchmarks of etcdlock and election, and
// the figures cmd/demo prints, all measure through it.
//
// A comparison runs two implementations, A (leasekit) and B (the etcd
// reference), on one server, in pairs of short rounds that alternate
// which goes first (Pairs), and takes the ratio of their scores per pair.
// The median and spread of those ratios are the figure: a machine whose
// speed drifts moves both sides of a pair alike, so drift widens the
// spread instead of picking the winner.
//
// A round is either a workload (Crew.Run: workers, each with a client of
// its own, loop take, hold, release on one name, and the round counts
// takes per second, handoffs, waits and each worker's share) or a number
// of election handovers (Rotation.Run: Resign until the next candidate's
// Campaign returns). Between pairs, the harness measures the server's
// ceiling (Ceiling): a committed Put and Delete, and the Delete's watch
// event at a watcher opened from the current revision. A handoff cannot
// beat that event, so each contended figure is also given as a fraction
// of the rate it implies.
//
// Servers (Targets) are an embedded etcd with fsync on, the headline,
// since production etcd syncs its log on every commit; the same with
// fsync off; and a real etcd process when $LEASEKIT_BENCH_ENDPOINTS names
// one. A benchmark records each comparison (Record), and the package's
// TestMain, wrapped with Main, prints them as a Markdown table at the end:
//
//	func TestMain(m *testing.M) { goleak.VerifyTestMain(benchkit.Main(m), ...) }
//
//	func BenchmarkContended(b *testing.B) {
//		for _, t := range benchkit.Targets() {
//			b.Run("server="+t.Name, func(b *testing.B) {
//				srv := t.StartTB(b)
//				c, err := benchkit.Compare(ctx, srv, "mutex", benchkit.LeasekitMutex(true),
//					benchkit.ConcurrencyMutex(false), wl, benchkit.Options{Pairs: b.N})
//				...
//				benchkit.Record(b, srv, c)
//			})
//		}
//	}
//
// b.N counts pairs: -benchtime=10x runs ten.
package benchkit
