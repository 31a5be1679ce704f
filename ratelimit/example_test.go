package ratelimit_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/leasekit/leasekit/embedtest"
	"github.com/leasekit/leasekit/ratelimit"
)

// Allow answers at once; a denial says when to retry.
func ExampleLimiter_Allow() {
	ctx := context.Background()
	c, err := embedtest.Start(ctx) // a real etcd, in-process
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	lim, err := ratelimit.New(c.Client(), "partner-api", ratelimit.PerMinute(2))
	if err != nil {
		log.Fatal(err)
	}
	defer lim.Close()

	for i := 1; i <= 3; i++ {
		r, err := lim.Allow(ctx, "account-42")
		if err != nil {
			log.Fatal(err)
		}
		if r.Allowed > 0 {
			fmt.Printf("call %d: allowed, %d left\n", i, r.Remaining)
		} else {
			fmt.Printf("call %d: denied, retry in %v\n", i, r.RetryAfter.Round(time.Second))
		}
	}
	// Output:
	// call 1: allowed, 1 left
	// call 2: allowed, 0 left
	// call 3: denied, retry in 30s
}

// Wait blocks until the event may happen, or until ctx ends.
func ExampleLimiter_Wait() {
	ctx := context.Background()
	c, err := embedtest.Start(ctx)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	// 200 events/s, one at a time: five events take at least 20ms.
	lim, err := ratelimit.New(c.Client(), "crawler", ratelimit.Limit{Rate: 200, Period: time.Second, Burst: 1})
	if err != nil {
		log.Fatal(err)
	}
	defer lim.Close()

	start := time.Now()
	for range 5 {
		if err := lim.Wait(ctx, "example.com"); err != nil {
			log.Fatal(err)
		}
	}
	fmt.Println("5 events; at least 20ms:", time.Since(start) >= 20*time.Millisecond)

	short, cancel := context.WithTimeout(ctx, time.Millisecond)
	defer cancel()
	slow, err := ratelimit.New(c.Client(), "reports", ratelimit.PerHour(1))
	if err != nil {
		log.Fatal(err)
	}
	defer slow.Close()
	_ = slow.Wait(ctx, "weekly")
	fmt.Println("second report this hour:", slow.Wait(short, "weekly") != nil)
	// Output:
	// 5 events; at least 20ms: true
	// second report this hour: true
}

// SetLimit changes the limit of every instance while they run.
func ExampleLimiter_SetLimit() {
	ctx := context.Background()
	c, err := embedtest.Start(ctx)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	changed := make(chan ratelimit.Limit, 1)
	a, err := ratelimit.New(c.Client(), "search", ratelimit.PerSecond(100))
	if err != nil {
		log.Fatal(err)
	}
	defer a.Close()
	b, err := ratelimit.New(c.Client(), "search", ratelimit.PerSecond(100),
		ratelimit.WithLimitHook(func(l ratelimit.Limit) { changed <- l }))
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close()
	if _, err := b.Allow(ctx, "warm-up"); err != nil { // b has read the stored limit
		log.Fatal(err)
	}

	if err := a.SetLimit(ctx, ratelimit.PerMinute(30)); err != nil {
		log.Fatal(err)
	}
	fmt.Println("a enforces", a.Limit())
	fmt.Println("b enforces", <-changed)
	// Output:
	// a enforces 30/1m0s burst 30
	// b enforces 30/1m0s burst 30
}
