package ratelimit_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/leasekit/leasekit/embedtest"
	"github.com/leasekit/leasekit/ratelimit"
)

// exampleCluster starts an embedded etcd for an example.
func exampleCluster() (*embedtest.Cluster, func()) {
	c, err := embedtest.Start(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	return c, func() { c.Close() }
}

// Allow answers at once; a denial says when to retry.
func ExampleLimiter_Allow() {
	ctx := context.Background()
	c, stop := exampleCluster() // a real etcd, in-process
	defer stop()

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
	c, stop := exampleCluster()
	defer stop()

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
	c, stop := exampleCluster()
	defer stop()

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

// Two replicas of a service, each with its own etcd client, share one limit
// per API key: 3 requests a minute, whichever replica serves them.
func ExampleMiddleware() {
	etcd, stop := exampleCluster()
	defer stop()

	hello := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "hello") })
	apiKey := func(r *http.Request) string { return r.Header.Get("X-API-Key") }
	var replicas []*httptest.Server
	for range 2 {
		cli, err := etcd.NewClient() // in production: clientv3.New in each replica
		if err != nil {
			log.Fatal(err)
		}
		lim, err := ratelimit.New(cli, "public-api", ratelimit.PerMinute(3))
		if err != nil {
			log.Fatal(err)
		}
		defer lim.Close()
		srv := httptest.NewServer(ratelimit.Middleware(lim, apiKey)(hello))
		defer srv.Close()
		replicas = append(replicas, srv)
	}

	// alice's requests go to the replicas in turn; bob has a bucket of
	// his own.
	for i, key := range []string{"alice", "alice", "alice", "alice", "bob"} {
		srv := replicas[i%2]
		req, err := http.NewRequest(http.MethodGet, srv.URL, nil)
		if err != nil {
			log.Fatal(err)
		}
		req.Header.Set("X-API-Key", key)
		resp, err := srv.Client().Do(req)
		if err != nil {
			log.Fatal(err)
		}
		resp.Body.Close()
		fmt.Printf("%s via replica %d: %d RateLimit: %s", key, i%2, resp.StatusCode, resp.Header.Get("RateLimit"))
		if ra := resp.Header.Get("Retry-After"); ra != "" {
			fmt.Printf(" Retry-After: %s", ra)
		}
		fmt.Println()
	}
	// Output:
	// alice via replica 0: 200 RateLimit: "public-api";r=2;t=20
	// alice via replica 1: 200 RateLimit: "public-api";r=1;t=20
	// alice via replica 0: 200 RateLimit: "public-api";r=0;t=20
	// alice via replica 1: 429 RateLimit: "public-api";r=0;t=20 Retry-After: 20
	// bob via replica 0: 200 RateLimit: "public-api";r=2;t=20
}

// Reserve schedules events instead of blocking; Cancel gives back the
// tokens of an event that will not happen.
func ExampleLimiter_Reserve() {
	ctx := context.Background()
	etcd, stop := exampleCluster()
	defer stop()

	// One job a second.
	lim, err := ratelimit.New(etcd.Client(), "jobs", ratelimit.Limit{Rate: 1, Period: time.Second, Burst: 1})
	if err != nil {
		log.Fatal(err)
	}
	defer lim.Close()

	var last *ratelimit.Reservation
	for i := 1; i <= 3; i++ {
		last, err = lim.Reserve(ctx, "export")
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("job %d: start in %v\n", i, last.Delay().Round(time.Second))
	}
	if err := last.Cancel(ctx); err != nil {
		log.Fatal(err)
	}
	next, err := lim.Reserve(ctx, "export")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("job 3 cancelled; job 4: start in %v\n", next.Delay().Round(time.Second))
	// Output:
	// job 1: start in 0s
	// job 2: start in 1s
	// job 3: start in 2s
	// job 3 cancelled; job 4: start in 2s
}

// The outage policy decides what calls get while etcd is unreachable: here
// a proxy cuts the limiters' client off.
func ExampleWithOutagePolicy() {
	ctx := context.Background()
	etcd, stop := exampleCluster()
	defer stop()
	proxy, err := etcd.NewProxy(0)
	if err != nil {
		log.Fatal(err)
	}
	cli, err := etcd.NewClient(clientv3.Config{Endpoints: []string{proxy.Endpoint()}})
	if err != nil {
		log.Fatal(err)
	}

	policies := []ratelimit.OutagePolicy{ratelimit.FailClosed, ratelimit.FailOpen}
	var lims []*ratelimit.Limiter
	for _, policy := range policies {
		lim, err := ratelimit.New(cli, "search-"+policy.String(), ratelimit.PerSecond(10),
			ratelimit.WithOutagePolicy(policy), ratelimit.WithCallTimeout(500*time.Millisecond))
		if err != nil {
			log.Fatal(err)
		}
		defer lim.Close()
		if _, err := lim.Allow(ctx, "tenant-7"); err != nil { // etcd is up
			log.Fatal(err)
		}
		lims = append(lims, lim)
	}

	proxy.Cut()
	for i, lim := range lims {
		r, err := lim.Allow(ctx, "tenant-7") // waits at most the call timeout
		fmt.Printf("%v: allowed %d, degraded %v, ErrUnavailable %v\n",
			policies[i], r.Allowed, r.Degraded, errors.Is(err, ratelimit.ErrUnavailable))
	}
	proxy.Heal()
	// Output:
	// FailClosed: allowed 0, degraded false, ErrUnavailable true
	// FailOpen: allowed 1, degraded true, ErrUnavailable false
}
