package election_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"

	"github.com/leasekit/leasekit/election"
	"github.com/leasekit/leasekit/embedtest"
	"github.com/leasekit/leasekit/internal/testkit"
)

// candidate returns an Election on a client of its own, resigned when the
// test ends.
func candidate(t *testing.T, c *embedtest.Cluster, name string, opts ...election.Option) *election.Election {
	t.Helper()
	cli, err := c.NewClient()
	require.NoError(t, err)
	return candidateOn(t, cli, name, opts...)
}

// candidateOn returns an Election on cli, resigned when the test ends.
func candidateOn(t *testing.T, cli *clientv3.Client, name string, opts ...election.Option) *election.Election {
	t.Helper()
	e, err := election.New(cli, name, opts...)
	require.NoError(t, err)
	testkit.Cleanup(t, func(ctx context.Context) { e.Resign(ctx) })
	return e
}

// observe starts e.Observe for the rest of the test: when the test ends,
// its ctx ends and its channel is drained.
func observe(t *testing.T, ctx context.Context, e *election.Election) <-chan election.Leader {
	ctx, stop := context.WithCancel(ctx)
	ch := e.Observe(ctx)
	t.Cleanup(func() {
		stop()
		for range ch {
		}
	})
	return ch
}

// quickRedial keeps gRPC's wait between reconnects short (it grows to 2
// minutes), so that a test waits for Observe rather than for the client.
var quickRedial = []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
	Backoff: backoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, MaxDelay: 200 * time.Millisecond},
})}

// waitQueued blocks until at least n candidates are in line for name,
// and returns their keys, oldest first.
func waitQueued(t *testing.T, cli *clientv3.Client, name string, n int) []string {
	t.Helper()
	return testkit.AwaitKeysAtLeast(t, cli, election.DefaultPrefix+name+"/", n)
}

// campaignAsync starts e.Campaign and returns a channel with its result.
func campaignAsync(ctx context.Context, e *election.Election, value string) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- e.Campaign(ctx, value) }()
	return ch
}

// interval is one term's duties, as recorded by a Run callback.
type interval struct {
	who        int
	rev        int64
	start, end time.Time
}

// duties records the intervals during which OnStartedLeading runs and
// fails the test if two ever run at once, or if one starts before the
// previous leader's OnStoppedLeading was called.
type duties struct {
	t       *testing.T
	mu      sync.Mutex
	active  int
	log     []interval
	stopped map[int]int
	started map[int]int
}

func newDuties(t *testing.T) *duties {
	return &duties{t: t, stopped: map[int]int{}, started: map[int]int{}}
}

// begin marks candidate who as running duties for term rev.
func (d *duties) begin(who int, rev int64) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.active++
	assert.Equal(d.t, 1, d.active, "candidate %d started duties (term %d) while others run theirs", who, rev)
	for other, n := range d.started {
		if other != who {
			assert.Equal(d.t, n, d.stopped[other], "candidate %d started duties (term %d) before candidate %d's OnStoppedLeading", who, rev, other)
		}
	}
	d.started[who]++
	d.log = append(d.log, interval{who: who, rev: rev, start: time.Now()})
	return len(d.log) - 1
}

func (d *duties) end(i int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.active--
	d.log[i].end = time.Now()
}

func (d *duties) stop(who int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.stopped[who]++
}

func (d *duties) terms() []interval {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]interval(nil), d.log...)
}

// check verifies that the recorded terms strictly increase and their
// intervals do not overlap, and that every start had its stop.
func (d *duties) check() {
	d.t.Helper()
	log := d.terms()
	for i := 1; i < len(log); i++ {
		prev, cur := log[i-1], log[i]
		assert.Greater(d.t, cur.rev, prev.rev, "term %d of candidate %d follows term %d", cur.rev, cur.who, prev.rev)
		assert.False(d.t, prev.end.IsZero() || cur.start.Before(prev.end), "term %d (candidate %d) started at %v, before term %d ended at %v",
			cur.rev, cur.who, cur.start, prev.rev, prev.end)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for who, n := range d.started {
		assert.Equal(d.t, n, d.stopped[who], "candidate %d started leading %d times, stopped %d times", who, n, d.stopped[who])
	}
}
