// Command demo is a narrated tour of leasekit: a fair lock queue with
// fencing tokens, a holder cut off from etcd and fenced out, leader
// election with handover and failover, a rate limit shared by several
// instances, and a semaphore. It runs on an embedded etcd, so it needs
// nothing but Go:
//
//	go run ./cmd/demo                      # the whole tour, about 12s once built
//	go run ./cmd/demo --scenario election  # one part
//	go run ./cmd/demo --endpoints 127.0.0.1:2379
//
// It ends with a table of the figures it measured.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// scenario is one part of the tour.
type scenario struct {
	name  string
	title string
	about string
	run   func(ctx context.Context, e *env) error
}

var scenarios = []scenario{
	{"queue", "Fair queue", "workers line up for one lock; acquisition order = arrival order, tokens, handoff times", runQueue},
	{"fencing", "Fencing", "a holder cut off from etcd is told first; its late guarded write is refused", runFencing},
	{"election", "Leader election", "three replicas: resign hands over at once, a cut-off leader fails over after its TTL", runElection},
	{"ratelimit", "Shared rate limit", "four instances share one limit; per-instance counts against the bound", runRateLimit},
	{"semaphore", "Semaphore and Manager", "a concurrency limit across replicas, and Manager.WithLock / TryWithLock", runSemaphore},
}

// sizing is how much work each scenario does. Tests use smallSize.
type sizing struct {
	queueWorkers      int           // workers lining up in the fair-queue story
	queueHold         time.Duration // how long each of them holds the lock
	benchWorkers      int           // workers in the contended throughput run
	benchHold         time.Duration // their hold time
	benchPairs        int           // pairs of rounds, one of each implementation
	benchRound        time.Duration // how long one round runs
	handoverPairs     int           // pairs of rounds of resign handovers
	handoversPerRound int           // handovers timed per round
	rateFor           time.Duration // how long the instances call the limiter
	rate              int           // the shared limit, per second
	semJobs           int           // jobs competing for the semaphore
	semHold           time.Duration // how long each job holds a permit
	faultTTL          time.Duration // TTL of the holders and leaders that are cut off
}

// fullSize is the tour: about 12s on an idle 2-core machine.
var fullSize = sizing{
	queueWorkers: 6, queueHold: 20 * time.Millisecond,
	benchWorkers: 8, benchHold: time.Millisecond, benchPairs: 4, benchRound: 400 * time.Millisecond,
	handoverPairs: 5, handoversPerRound: 2,
	rateFor: 2 * time.Second, rate: 1000,
	semJobs: 9, semHold: 100 * time.Millisecond,
	faultTTL: time.Second,
}

// smallSize keeps the same stories with less measuring, for tests.
var smallSize = sizing{
	queueWorkers: 4, queueHold: 5 * time.Millisecond,
	benchWorkers: 4, benchHold: time.Millisecond, benchPairs: 1, benchRound: 100 * time.Millisecond,
	handoverPairs: 1, handoversPerRound: 2,
	rateFor: 300 * time.Millisecond, rate: 200,
	semJobs: 5, semHold: 20 * time.Millisecond,
	// Tests share the machine with other packages' tests under -race: a
	// 1s lease could be lost to a starved keepalive, not to the cut.
	faultTTL: 2 * time.Second,
}

// tourSize is the sizing run uses; tests make it smallSize.
var tourSize = fullSize

// scenarioTimeout bounds each part, so that the tour always ends.
const scenarioTimeout = 60 * time.Second

// config is what the flags chose.
type config struct {
	endpoints []string // empty: start an embedded cluster
	members   int      // embedded members; 0: three if they start fast, else one
	fsync     bool     // embedded members sync their log on every commit
	only      string   // one scenario, or all
	size      sizing
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// run is main without the process: it returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	endpoints := fs.String("endpoints", "", "`host:port,...` of a running etcd cluster, loopback only (default: start an embedded one)")
	only := fs.String("scenario", "", "run only the part `NAME` (listed above)")
	members := fs.Int("members", 0, "members of the embedded cluster (default: 3 if they start within 5s, else 1)")
	fsync := fs.Bool("fsync", false, "the embedded cluster syncs its log to disk on every commit, as a production etcd does")
	fs.Usage = func() { usage(fs) }
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "demo: unexpected argument %q\n", fs.Arg(0))
		usage(fs)
		return 2
	}
	cfg := config{members: *members, only: *only, fsync: *fsync, size: tourSize}
	if *endpoints != "" {
		eps, err := parseEndpoints(*endpoints)
		if err != nil {
			fmt.Fprintln(stderr, "demo:", err)
			return 2
		}
		cfg.endpoints = eps
	}
	if cfg.only != "" && find(cfg.only) == nil {
		fmt.Fprintf(stderr, "demo: no scenario %q; the scenarios are %s\n", cfg.only, names())
		return 2
	}
	if cfg.members < 0 || cfg.members > 9 {
		fmt.Fprintln(stderr, "demo: --members must be between 1 and 9")
		return 2
	}
	if err := tour(ctx, cfg, stdout); err != nil {
		fmt.Fprintln(stderr, "demo:", err)
		return 1
	}
	return 0
}

func usage(fs *flag.FlagSet) {
	w := fs.Output()
	fmt.Fprintf(w, `leasekit demo: a narrated tour of fair locks, fencing, leader election and
shared rate limits on etcd, ending with a table of measured figures.

Usage: go run ./cmd/demo [flags]      (or: make demo ARGS="flags")

With no flags it starts an embedded etcd (nothing to install) and runs every
part in about 12 seconds once built. Each simulated instance has its own
etcd client, as separate processes would. The fault scenarios cut one client off from
etcd with a TCP proxy in this process; against --endpoints the proxy sits in
front of your member instead. Keys are written under /leasekit-demo/<run>/
and removed at the end.

Scenarios (--scenario NAME):
`)
	for _, s := range scenarios {
		fmt.Fprintf(w, "  %-10s %s\n", s.name, s.about)
	}
	fmt.Fprintln(w, "\nFlags:")
	fs.PrintDefaults()
}

func find(name string) *scenario {
	for i := range scenarios {
		if scenarios[i].name == name {
			return &scenarios[i]
		}
	}
	return nil
}

func names() string {
	var ns []string
	for _, s := range scenarios {
		ns = append(ns, s.name)
	}
	return strings.Join(ns, ", ")
}

// tour sets up the cluster, runs the chosen scenarios in order and prints
// the summary. A failed scenario does not stop the others; tour then
// returns an error naming the failures.
func tour(ctx context.Context, cfg config, w io.Writer) error {
	out := newNarrator(w)
	e := &env{out: out, sum: &summary{}, size: cfg.size, prefix: newRunPrefix()}
	fmt.Fprintln(w, "leasekit demo: fair locks, fencing, leader election and shared rate limits on etcd.")

	if len(cfg.endpoints) == 0 {
		stop := out.progress("starting an embedded etcd", nil)
		c, took, err := startEmbedded(ctx, out, cfg.members, cfg.fsync)
		stop()
		if err != nil {
			return fmt.Errorf("start embedded etcd: %w", err)
		}
		defer c.Close()
		e.cluster = c
		e.fsync = fsyncOff
		if cfg.fsync {
			e.fsync = fsyncOn
		}
		e.admin = c.Client()
		for _, ep := range c.Endpoints() {
			e.endpoints = append(e.endpoints, strings.TrimPrefix(ep, "http://"))
		}
		fmt.Fprintf(w, "Started an embedded etcd of %d member(s), %s, in %s, clients on %s.\n",
			c.Members(), e.fsync, ms(took), strings.Join(e.endpoints, ", "))
		e.sum.add("setup", fmt.Sprintf("embedded etcd start, %d member(s)", c.Members()), ms(took))
	} else {
		e.endpoints = cfg.endpoints
		cli, err := dial(cfg.endpoints...)
		if err != nil {
			return fmt.Errorf("connect to %s: %w", strings.Join(cfg.endpoints, ","), err)
		}
		defer cli.Close()
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err = cli.Get(pctx, "health")
		cancel()
		if err != nil {
			return fmt.Errorf("etcd at %s does not answer: %w", strings.Join(cfg.endpoints, ","), err)
		}
		e.admin = cli
		e.fsync = detectFsync(ctx, cli, cfg.endpoints[0], e.prefix)
		fmt.Fprintf(w, "Using the etcd cluster at %s (%s); keys go under %s.\n", strings.Join(cfg.endpoints, ","), e.fsync, e.prefix)
		defer e.removeKeys()
	}
	fmt.Fprintln(w, "Each instance below has its own etcd client, as separate processes would.")

	var run []scenario
	for _, s := range scenarios {
		if cfg.only == "" || s.name == cfg.only {
			run = append(run, s)
		}
	}
	var failed []string
	for i, s := range run {
		out.section(i+1, len(run), s.title)
		sctx, cancel := context.WithTimeout(ctx, scenarioTimeout)
		err := s.run(sctx, e)
		cancel()
		if err != nil {
			out.say("FAILED: %v", err)
			failed = append(failed, s.name)
			e.sum.add(s.name, "FAILED", err.Error())
		}
		if ctx.Err() != nil {
			break
		}
	}
	e.sum.print(w, e.setup())
	if len(failed) > 0 {
		return fmt.Errorf("scenarios failed: %s", strings.Join(failed, ", "))
	}
	return ctx.Err()
}

// removeKeys deletes what the run left on a real cluster. Keys on leases
// go with their leases; the rest (guarded writes, rate-limit buckets) go
// here.
func (e *env) removeKeys() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := e.admin.Delete(ctx, e.prefix, clientv3.WithPrefix()); err != nil {
		fmt.Fprintf(os.Stderr, "demo: could not remove the keys under %s: %v\n", e.prefix, err)
	}
}
