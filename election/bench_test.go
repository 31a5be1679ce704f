package election_test

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/leasekit/leasekit/internal/benchkit"
)

// BenchmarkHandover times Resign -> the next candidate's Campaign returns,
// leasekit beside etcd's concurrency.Election, in b.N pairs of rounds of
// 10 handovers that alternate the two on one server (benchkit.Targets:
// embedded etcd with fsync on, the headline, and off; a real etcd when
// $LEASEKIT_BENCH_ENDPOINTS is set). Two candidates, each with its own
// client, take turns on one name; the next is in line (its key visible)
// before the leader resigns.
//
// How long the next candidate has been in line matters to
// concurrency.Election: its watch starts in the past, and etcd serves
// such watches from a loop that runs every 100ms until they catch up.
// line=random and line=settled run on the headline server only.
//   - line=fresh: it lines up just before the leader resigns, as when
//     candidates campaign again after each term (Run does). Back to back,
//     each cycle falls into step with etcd's loop, which makes this the
//     worst case for concurrency.Election.
//   - line=random: the leader resigns 0-100ms after the next lines up
//     (uniform), so handovers fall at random points of etcd's loop.
//   - line=settled: the next has waited 250ms; etcd has caught its watch
//     up and concurrency.Election is fast too.
func BenchmarkHandover(b *testing.B) {
	headline := []benchkit.Target{benchkit.Embedded(true)}
	for _, line := range []struct {
		name string
		o    benchkit.Options
	}{
		{"fresh", benchkit.Options{}},
		{"random", benchkit.Options{Targets: headline,
			Settle: func() time.Duration { return rand.N(100 * time.Millisecond) }}},
		{"settled", benchkit.Options{Targets: headline, Handovers: 4,
			Settle: func() time.Duration { return 250 * time.Millisecond }}},
	} {
		b.Run("line="+line.name, func(b *testing.B) {
			benchkit.BenchHandovers(b, "election, Resign -> next leader, line "+line.name,
				benchkit.LeasekitElection(), benchkit.ConcurrencyElection(), line.o)
		})
	}
}
