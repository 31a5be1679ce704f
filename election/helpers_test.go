package election_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/leasekit/leasekit/election"
	"github.com/leasekit/leasekit/embedtest"
)

// testTimeout bounds every wait in a test, so that a bug fails the test
// instead of hanging it.
const testTimeout = 30 * time.Second

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// candidate returns an Election on a client of its own, resigned when the
// test ends.
func candidate(t *testing.T, c *embedtest.Cluster, name string, opts ...election.Option) *election.Election {
	t.Helper()
	cli, err := c.NewClient()
	if err != nil {
		t.Fatal(err)
	}
	e, err := election.New(cli, name, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		e.Resign(ctx)
	})
	return e
}

// waitQueued blocks until at least n candidates are in line for name,
// and returns their keys, oldest first.
func waitQueued(t *testing.T, cli *clientv3.Client, name string, n int) []string {
	t.Helper()
	return waitKeys(t, cli, election.DefaultPrefix+name+"/", n)
}

// waitKeys blocks until at least n keys exist under prefix and returns
// them, oldest first.
func waitKeys(tb testing.TB, cli *clientv3.Client, prefix string, n int) []string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	keys, err := keysAtLeast(ctx, cli, prefix, n)
	if err != nil {
		tb.Fatal(err)
	}
	return keys
}

// keysAtLeast is waitKeys for any goroutine. It watches from the current
// revision and then reads, rather than watching from the read's revision:
// that would start in the past and wait for etcd's 100ms catch-up loop.
func keysAtLeast(ctx context.Context, cli *clientv3.Client, prefix string, n int) ([]string, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wch := cli.Watch(ctx, prefix, clientv3.WithPrefix(), clientv3.WithCreatedNotify())
	if wr := <-wch; !wr.Created {
		return nil, fmt.Errorf("watch %q: %v %v", prefix, wr.Err(), ctx.Err())
	}
	resp, err := cli.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithKeysOnly(),
		clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortAscend))
	if err != nil {
		return nil, err
	}
	var order []string
	for _, kv := range resp.Kvs {
		order = append(order, string(kv.Key))
	}
	for len(order) < n {
		wr, ok := <-wch
		if !ok || wr.Err() != nil {
			return nil, fmt.Errorf("waiting for %d keys under %q: %v %v", n, prefix, wr.Err(), ctx.Err())
		}
		for _, ev := range wr.Events {
			if ev.Kv.ModRevision <= resp.Header.Revision {
				continue // the read saw it
			}
			k := string(ev.Kv.Key)
			if i := slices.Index(order, k); ev.Type == clientv3.EventTypeDelete {
				if i >= 0 {
					order = slices.Delete(order, i, i+1)
				}
			} else if i < 0 {
				order = append(order, k)
			}
		}
	}
	return order, nil
}

// campaignAsync starts e.Campaign and returns a channel with its result.
func campaignAsync(ctx context.Context, e *election.Election, value string) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- e.Campaign(ctx, value) }()
	return ch
}

func recv[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(testTimeout):
		t.Fatal("timed out waiting for a value")
	}
	var zero T
	return zero
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
	if d.active != 1 {
		d.t.Errorf("candidate %d started duties (term %d) while %d others run theirs", who, rev, d.active-1)
	}
	for other, n := range d.started {
		if other != who && d.stopped[other] != n {
			d.t.Errorf("candidate %d started duties (term %d) before candidate %d's OnStoppedLeading", who, rev, other)
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
		if cur.rev <= prev.rev {
			d.t.Errorf("term %d of candidate %d follows term %d", cur.rev, cur.who, prev.rev)
		}
		if prev.end.IsZero() || cur.start.Before(prev.end) {
			d.t.Errorf("term %d (candidate %d) started at %v, before term %d ended at %v",
				cur.rev, cur.who, cur.start, prev.rev, prev.end)
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for who, n := range d.started {
		if d.stopped[who] != n {
			d.t.Errorf("candidate %d started leading %d times, stopped %d times", who, n, d.stopped[who])
		}
	}
}
