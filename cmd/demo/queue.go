package main

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/leasekit/leasekit/etcdlock"
	"github.com/leasekit/leasekit/internal/benchkit"
	"github.com/leasekit/leasekit/internal/etcderr"
)

// hold is one worker's turn with the lock in the fair-queue story.
type hold struct {
	worker    int
	token     int64
	acquired  time.Time
	releasing time.Time // just before Release
	wrote     bool      // its guarded write went through
}

func worker(i int) string { return "w" + strconv.Itoa(i+1) }

// runQueue lines workers up for one lock in a known order and shows that
// they get it in that order, with increasing tokens and fast handoffs;
// then it measures contended throughput beside etcd's concurrency.Mutex.
func runQueue(ctx context.Context, e *env) error {
	sc := e.scope()
	defer sc.close()
	n := e.size.queueWorkers
	// A name of plain characters is stored as is: its queue is the prefix
	// <locker prefix><name>/ (etcdlock.DefaultPrefix documents the layout).
	const name = "daily-report"
	queue := e.lockPrefix() + name + "/"
	e.out.say(`%d workers, each with its own etcd client and Locker, ask for the lock %q
one after another while w1 holds it. Each request is one key in etcd; its
create revision is its place in line and its fencing token. A waiter
watches only the keys right ahead of it, from the current revision, so
the holder's delete event alone admits the next one: no polling, no herd.`, n, name)

	lockers := make([]*etcdlock.Locker, n)
	clis := make([]*clientv3.Client, n)
	for i := range lockers {
		cli, err := sc.client()
		if err != nil {
			return err
		}
		clis[i] = cli
		l, err := sc.locker(cli, etcdlock.WithMetadata(map[string]string{"worker": worker(i)}))
		if err != nil {
			return err
		}
		lockers[i] = l
	}

	go1 := make(chan struct{}) // closed when everyone is in line: w1 lets go
	holds := make(chan hold, n)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	defer wg.Wait()
	lineUp := func(i int) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h, err := takeTurn(ctx, e, clis[i], lockers[i], name, i, go1)
			if err != nil {
				errs <- fmt.Errorf("%s: %w", worker(i), err)
				return
			}
			holds <- h
		}()
	}
	for i := range n {
		lineUp(i)
		// The next worker asks only once this one's key is in etcd, so
		// arrival order is known.
		if err := waitKeys(ctx, e.admin, queue, i+1); err != nil {
			return err
		}
	}
	info, err := lockers[0].Inspect(ctx, name)
	if err != nil {
		return err
	}
	e.out.event("all %d in line. Locker.Inspect shows the queue as etcd has it:", n)
	var rows [][]string
	for i, en := range append([]etcdlock.Entry{*info.Holder}, info.Waiters...) {
		role := "waiting"
		if i == 0 {
			role = "holds"
		}
		rows = append(rows, []string{strconv.Itoa(i + 1), en.Metadata["worker"], role,
			strconv.FormatInt(en.Token, 10), en.EtcdKey})
	}
	e.out.table([]string{"place", "worker", "state", "token", "etcd key"}, rows)
	e.out.say("w1 releases; each worker then holds the lock for %v (a guarded write of its token) and releases.",
		e.size.queueHold)
	close(go1)

	var got []hold
	for range n {
		select {
		case h := <-holds:
			got = append(got, h)
		case err := <-errs:
			return err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	slices.SortFunc(got, func(a, b hold) int { return a.acquired.Compare(b.acquired) })
	var handoffs []time.Duration
	rows = rows[:0]
	inOrder, rising := true, true
	for k, h := range got {
		handoff := "-"
		if k > 0 {
			d := h.acquired.Sub(got[k-1].releasing)
			handoffs = append(handoffs, d)
			handoff = ms(d)
			rising = rising && h.token > got[k-1].token
		}
		inOrder = inOrder && h.worker == k
		rows = append(rows, []string{strconv.Itoa(k + 1), worker(h.worker), strconv.FormatInt(h.token, 10),
			"+" + ms(h.acquired.Sub(got[0].acquired)), handoff, strconv.FormatBool(h.wrote)})
	}
	e.out.table([]string{"turn", "worker", "token", "acquired", "handoff", "guarded write ok"}, rows)
	e.out.say("handoff = from the holder calling Release to the next worker's Lock returning.")
	if !inOrder || !rising {
		return fmt.Errorf("acquisition order or tokens wrong: in arrival order %v, tokens rising %v", inOrder, rising)
	}
	e.out.say("Acquisition order = arrival order; tokens strictly increase.")
	e.sum.add("queue", "acquisition order = arrival order", fmt.Sprintf("yes, %d of %d; tokens rising", n, n))
	e.sum.add("queue", "handoff, release -> next Lock returns",
		fmt.Sprintf("p50 %s, max %s (%d handoffs)", ms(percentile(handoffs, 50)), ms(percentile(handoffs, 100)), len(handoffs)))

	return compareThroughput(ctx, e)
}

// takeTurn waits for the lock, proves it holds it with a guarded write,
// holds it and releases it. Worker 0 holds until go1 is closed.
func takeTurn(ctx context.Context, e *env, cli *clientv3.Client, l *etcdlock.Locker, name string, i int,
	go1 <-chan struct{}) (hold, error) {
	lk, err := l.LockWithOptions(ctx, etcdlock.LockOptions{Key: name, TTL: 10 * time.Second, AutoRefresh: true})
	if err != nil {
		return hold{}, err
	}
	h := hold{worker: i, token: lk.Token(), acquired: time.Now()}
	resp, err := cli.Txn(ctx).If(lk.Guard()).
		Then(clientv3.OpPut(e.dataKey("report"), fmt.Sprintf("section by %s, token %d", worker(i), h.token))).Commit()
	if err != nil {
		return hold{}, err
	}
	h.wrote = resp.Succeeded
	if i == 0 {
		select {
		case <-go1:
		case <-ctx.Done():
		}
	} else {
		work(ctx, e.size.queueHold)
	}
	h.releasing = time.Now()
	if err := lk.Release(ctx); err != nil {
		return hold{}, err
	}
	return h, nil
}

// work stands for the work a holder does: it takes d, or until ctx ends.
func work(ctx context.Context, d time.Duration) { etcderr.Sleep(ctx, d) }

// compareThroughput runs DESIGN.md's contended workload (workers with
// their own clients, one lock, 1ms holds) on leasekit and on etcd's
// concurrency.Mutex through internal/benchkit, the harness of the
// benchmarks: the two take turns in pairs of short rounds, so that both
// see the same load on a shared machine, and between pairs it measures
// the ceiling this etcd allows.
func compareThroughput(ctx context.Context, e *env) error {
	s := e.size
	e.out.say(`
Throughput under contention: %d workers with their own clients take one
lock in a loop and hold it %v. leasekit and etcd's own concurrency.Mutex
take turns, %d rounds of %v each. concurrency.Mutex waits with a watch
that starts at a past revision, which etcd serves from a loop that runs
every 100ms.`, s.benchWorkers, s.benchHold, s.benchPairs, s.benchRound)

	srv := e.benchServer()
	defer srv.Close()
	wl := benchkit.Workload{Workers: s.benchWorkers, Hold: s.benchHold, Exclusive: true}
	var pairs atomic.Int64
	stop := e.out.progress("taking turns", func() string { return fmt.Sprintf("%d of %d pairs", pairs.Load(), s.benchPairs) })
	defer stop()
	c, err := benchkit.Compare(ctx, srv, "mutex", benchkit.LeasekitMutex(true), benchkit.ConcurrencyMutex(false), wl,
		benchkit.Options{Pairs: s.benchPairs, Round: s.benchRound, Progress: func(done, _ int) { pairs.Store(int64(done)) }})
	stop()
	if err != nil {
		return err
	}
	lk, cm := benchkit.Sum(c.RoundsA), benchkit.Sum(c.RoundsB)
	row := func(name string, sd benchkit.Side) []string {
		return []string{name, fmt.Sprintf("%.0f", sd.Rate.Median), ms(sd.Handoff50), ms(sd.Handoff99), ms(sd.Wait99)}
	}
	e.out.table([]string{"implementation", "acquisitions/s", "handoff p50", "handoff p99", "wait p99"}, [][]string{
		row("leasekit etcdlock", lk), row("etcd concurrency.Mutex", cm),
	})
	r := c.Ratio()
	e.out.say("leasekit: %.1fx the acquisitions of concurrency.Mutex (per pair of rounds: %.1f-%.1fx), on %s.",
		r.Median, r.Min, r.Max, e.mode())
	event := benchkit.Percentile(c.Ceiling.Event, 50)
	ceiling := c.Ceiling.Rate(lk.Hold)
	e.out.say(`A handoff cannot beat one committed delete and its watch event: here %s
(p50), which with holds of %s allows at most %.0f acquisitions/s.
leasekit reached %.0f%% of that.`, ms(event), ms(lk.Hold), ceiling, 100*c.OfCeiling().Median)
	if lk.Errs+cm.Errs > 0 {
		e.out.say("Calls that failed and were retried: leasekit %d, concurrency.Mutex %d.", lk.Errs, cm.Errs)
	}
	e.sum.add("queue", fmt.Sprintf("%d workers, hold %v: leasekit", s.benchWorkers, s.benchHold),
		fmt.Sprintf("%.0f acq/s, handoff p99 %s, %.0f%% of the ceiling", lk.Rate.Median, ms(lk.Handoff99), 100*c.OfCeiling().Median))
	e.sum.add("queue", "same workload: etcd concurrency.Mutex",
		fmt.Sprintf("%.0f acq/s, handoff p99 %s (leasekit %.1fx)", cm.Rate.Median, ms(cm.Handoff99), r.Median))
	return nil
}

func cmpOr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}
