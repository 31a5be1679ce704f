package main

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/leasekit/leasekit/ratelimit"
)

// runRateLimit has several instances share one limit on one key, each
// calling Wait as fast as it is let through, and compares what they got
// with the limit's bound.
func runRateLimit(ctx context.Context, e *env) error {
	sc := e.scope()
	defer sc.close()
	const (
		name      = "partner-api"
		key       = "account-42"
		instances = 4
		callers   = 4 // goroutines per instance
	)
	s := e.size
	lim := ratelimit.PerSecond(s.rate)
	e.out.say(`%d instances share the limit %v on %q for the key %q. Each has its own
client and Limiter and %d goroutines that call Wait in a loop for %v; the
bucket starts full. The bucket is GCRA state in one etcd key, changed by
compare-and-swap. A busy instance takes tokens in batches (at most what
the rate yields in %v) and serves them from memory.`,
		instances, lim, name, key, callers, s.rateFor, ratelimit.DefaultBatchWindow)

	lims := make([]*ratelimit.Limiter, instances)
	for i := range lims {
		cli, err := sc.client()
		if err != nil {
			return err
		}
		l, err := ratelimit.New(cli, name, lim, ratelimit.WithPrefix(e.ratePrefix()))
		if err != nil {
			return err
		}
		sc.defer_(func() { l.Close() })
		lims[i] = l
	}
	before, err := e.admin.Get(ctx, "revision")
	if err != nil {
		return err
	}

	var counts [instances]atomic.Int64
	total := func() int64 {
		var t int64
		for i := range counts {
			t += counts[i].Load()
		}
		return t
	}
	stop := e.out.progress("instances calling Wait", func() string { return fmt.Sprintf("%d allowed so far", total()) })
	start := time.Now()
	wctx, cancel := context.WithDeadline(ctx, start.Add(s.rateFor))
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for i, l := range lims {
		for range callers {
			wg.Go(func() {
				for {
					err := l.Wait(wctx, key)
					if err != nil {
						if wctx.Err() == nil {
							mu.Lock()
							firstErr = cmpOr(firstErr, err)
							mu.Unlock()
						}
						return
					}
					counts[i].Add(1)
				}
			})
		}
	}
	wg.Wait()
	cancel()
	stop()
	if firstErr != nil {
		return firstErr
	}
	after, err := e.admin.Get(ctx, "revision")
	if err != nil {
		return err
	}

	sum := total()
	bound := int64(lim.Burst) + int64(float64(lim.Rate)*s.rateFor.Seconds()/lim.Period.Seconds())
	writes := after.Header.Revision - before.Header.Revision
	var rows [][]string
	for i := range counts {
		c := counts[i].Load()
		rows = append(rows, []string{"i" + strconv.Itoa(i+1), strconv.FormatInt(c, 10),
			fmt.Sprintf("%.0f%%", 100*float64(c)/float64(max(sum, 1)))})
	}
	rows = append(rows, []string{"total", strconv.FormatInt(sum, 10), "100%"})
	e.out.table([]string{"instance", "allowed", "share"}, rows)
	e.out.say(`The bound over %v is Burst + Rate x t = %d + %d = %d events.
Allowed in all: %d, %.1f%% of the bound, with %d etcd writes (%.3f per permit).`,
		s.rateFor, lim.Burst, bound-int64(lim.Burst), bound, sum, 100*float64(sum)/float64(bound),
		writes, float64(writes)/float64(max(sum, 1)))
	if sum > bound+int64(float64(lim.Rate)*ratelimit.DefaultBatchWindow.Seconds()) {
		return fmt.Errorf("allowed %d, more than the bound %d plus one batch window", sum, bound)
	}

	// A denial costs no write: the instance knows the bucket is short.
	r, err := lims[0].AllowN(ctx, key, lim.Burst)
	if err != nil {
		return err
	}
	again, err := e.admin.Get(ctx, "revision")
	if err != nil {
		return err
	}
	if r.Allowed == 0 {
		e.out.event("i1 asks for a whole burst (%d) at once: denied, retry after %s; etcd writes for the denial: %d",
			lim.Burst, ms(r.RetryAfter), again.Header.Revision-after.Header.Revision)
	} else {
		// Only when the callers were too slow to drain the bucket.
		e.out.event("i1 asks for a whole burst (%d) at once: allowed, the bucket had refilled", lim.Burst)
	}
	e.sum.add("ratelimit", fmt.Sprintf("%d instances share %v for %v", instances, lim, s.rateFor),
		fmt.Sprintf("%d allowed, bound %d (%.1f%%)", sum, bound, 100*float64(sum)/float64(bound)))
	e.sum.add("ratelimit", "etcd writes per permit", fmt.Sprintf("%.3f (%d writes)", float64(writes)/float64(max(sum, 1)), writes))
	return nil
}
