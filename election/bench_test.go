package election_test

import (
	"context"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/leasekit/leasekit/election"
	"github.com/leasekit/leasekit/embedtest"
)

// contestant is one candidate of an election implementation.
type contestant interface {
	Campaign(ctx context.Context, value string) error
	Resign(ctx context.Context) error
}

// benchHandover measures Resign -> the next candidate's Campaign returns,
// with two candidates on clients of their own taking turns. prefix is
// where the implementation keeps the candidates' keys, so that the next
// candidate is known to be in line before the leader resigns. ns/op is a
// whole cycle (the next candidate lines up, the leader resigns, the next
// wins); handover-p50-ms and handover-p99-ms are the handover alone.
//
// settle, if not nil, says how long the next candidate waits in line
// before the leader resigns.
func benchHandover(b *testing.B, admin *clientv3.Client, prefix string, settle func() time.Duration, cs [2]contestant) {
	ctx := context.Background()
	if err := cs[0].Campaign(ctx, "0"); err != nil {
		b.Fatal(err)
	}
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		leader, next := cs[i%2], cs[(i+1)%2]
		won := make(chan time.Time, 1)
		go func() {
			if err := next.Campaign(ctx, "v"); err != nil {
				b.Error(err)
			}
			won <- time.Now()
		}()
		waitKeys(b, admin, prefix, 2)
		if settle != nil {
			// Not a wait for a condition: the scenario is a candidate
			// that has been in line this long.
			time.Sleep(settle())
		}
		start := time.Now()
		if err := leader.Resign(ctx); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, (<-won).Sub(start))
	}
	b.StopTimer()
	if err := cs[b.N%2].Resign(ctx); err != nil {
		b.Fatal(err)
	}
	slices.Sort(lat)
	b.ReportMetric(ms(lat[len(lat)/2]), "handover-p50-ms")
	b.ReportMetric(ms(lat[len(lat)*99/100]), "handover-p99-ms")
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// BenchmarkHandover is the goal: Resign -> next candidate's
// Campaign returns, leasekit beside etcd's concurrency.Election on the
// same embedded server in the same run.
//
// How long the next candidate has been in line matters to
// concurrency.Election: its watch starts in the past, and etcd serves
// such watches from a loop that runs every 100ms until they catch up.
//   - line=fresh: it lines up just before the leader resigns, as when
//     candidates re-campaign after each term (Run does). Back to back,
//     each cycle falls into step with etcd's loop, which makes this the
//     worst case for concurrency.Election.
//   - line=random: the leader resigns 0-100ms after the next lines up
//     (uniform), so handovers fall at random points of etcd's loop.
//   - line=settled: the next has waited 250ms; etcd has caught its watch
//     up and concurrency.Election is fast too.
func BenchmarkHandover(b *testing.B) {
	b.Run("line=fresh", func(b *testing.B) {
		for _, fsync := range []bool{false, true} {
			name := "fsync=off"
			if fsync {
				name = "fsync=on"
			}
			b.Run(name, func(b *testing.B) { benchImpls(b, embedtest.New(b, embedtest.WithFsync(fsync)), nil) })
		}
	})
	b.Run("line=random", func(b *testing.B) {
		benchImpls(b, embedtest.New(b), func() time.Duration { return rand.N(100 * time.Millisecond) })
	})
	b.Run("line=settled", func(b *testing.B) {
		benchImpls(b, embedtest.New(b), func() time.Duration { return 250 * time.Millisecond })
	})
}

func benchImpls(b *testing.B, c *embedtest.Cluster, settle func() time.Duration) {
	b.Run("impl=leasekit", func(b *testing.B) {
		var cs [2]contestant
		for i := range cs {
			cli, err := c.NewClient()
			if err != nil {
				b.Fatal(err)
			}
			e, err := election.New(cli, "bench", election.WithTTL(10*time.Second))
			if err != nil {
				b.Fatal(err)
			}
			cs[i] = e
		}
		benchHandover(b, c.Client(), election.DefaultPrefix+"bench/", settle, cs)
	})
	b.Run("impl=concurrency", func(b *testing.B) {
		var cs [2]contestant
		for i := range cs {
			cli, err := c.NewClient()
			if err != nil {
				b.Fatal(err)
			}
			s, err := concurrency.NewSession(cli, concurrency.WithTTL(10))
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { s.Close() })
			cs[i] = concurrency.NewElection(s, "/bench-concurrency")
		}
		benchHandover(b, c.Client(), "/bench-concurrency/", settle, cs)
	})
}
