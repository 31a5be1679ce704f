package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/leasekit/leasekit/embedtest"
	"github.com/leasekit/leasekit/etcdclient"
)

// env is where the scenarios run: an embedded cluster or the cluster of
// --endpoints, a key prefix of this run's own, and the output.
type env struct {
	out  *narrator
	sum  *summary
	size sizing

	cluster   *embedtest.Cluster // nil with --endpoints
	endpoints []string           // host:port of each member
	admin     *clientv3.Client   // for reads that set a scene or check it

	// prefix is where every key of this run lives, so that runs never
	// meet each other's keys and a real cluster is easy to clean.
	prefix string
}

// Where each package keeps its keys in this run.
func (e *env) lockPrefix() string     { return e.prefix + "lock/" }
func (e *env) electionPrefix() string { return e.prefix + "election/" }
func (e *env) ratePrefix() string     { return e.prefix + "ratelimit/" }
func (e *env) dataKey(k string) string {
	return e.prefix + "data/" + k
}

// setup says what the run is on, for the summary.
func (e *env) setup() string {
	if e.cluster != nil {
		return fmt.Sprintf("an embedded etcd of %d member(s), fsync off", e.cluster.Members())
	}
	return fmt.Sprintf("the etcd cluster at %s", strings.Join(e.endpoints, ","))
}

func newRunPrefix() string {
	b := make([]byte, 4)
	rand.Read(b)
	return "/leasekit-demo/" + hex.EncodeToString(b) + "/"
}

// startEmbedded starts the cluster the tour runs on when no --endpoints
// are given. members 0 means three if they start within startBudget,
// else one.
func startEmbedded(ctx context.Context, out *narrator, members int) (*embedtest.Cluster, time.Duration, error) {
	try := func(n int, budget time.Duration) (*embedtest.Cluster, time.Duration, error) {
		sctx, cancel := context.WithTimeout(ctx, budget)
		defer cancel()
		start := time.Now()
		c, err := embedtest.Start(sctx, embedtest.WithMembers(n))
		return c, time.Since(start), err
	}
	if members > 0 {
		return try(members, 30*time.Second)
	}
	c, took, err := try(3, startBudget)
	if err == nil {
		return c, took, nil
	}
	if ctx.Err() != nil {
		return nil, 0, ctx.Err()
	}
	out.say("Three members did not start within %v (%v); using one member.", startBudget, err)
	return try(1, 30*time.Second)
}

// startBudget is how long a three-member start may take before the tour
// falls back to one member. Three start in about 150ms (docs/benchmarks.md).
const startBudget = 5 * time.Second

// parseEndpoints turns "host:port,..." (with or without http://) into
// host:port addresses. The demo writes and deletes keys, and a scenario
// puts a local proxy in front of a member, so only loopback addresses are
// accepted: the demo is never pointed at a shared cluster by mistake.
func parseEndpoints(s string) ([]string, error) {
	var eps []string
	for _, ep := range strings.Split(s, ",") {
		ep = strings.TrimSpace(ep)
		if ep == "" {
			continue
		}
		if strings.Contains(ep, "://") {
			u, err := url.Parse(ep)
			if err != nil {
				return nil, fmt.Errorf("endpoint %q: %v", ep, err)
			}
			if u.Scheme != "http" {
				return nil, fmt.Errorf("endpoint %q: only plain http endpoints are supported", ep)
			}
			ep = u.Host
		}
		host, _, err := net.SplitHostPort(ep)
		if err != nil {
			return nil, fmt.Errorf("endpoint %q: want host:port: %v", ep, err)
		}
		if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			return nil, fmt.Errorf("endpoint %q: only loopback addresses (127.0.0.1, ::1, localhost) are accepted", ep)
		}
		eps = append(eps, ep)
	}
	if len(eps) == 0 {
		return nil, errors.New("--endpoints: no endpoint given")
	}
	return eps, nil
}

// dial connects to endpoints with leasekit's recommended client settings
// (etcdclient.Config): a client cut off by a scenario reconnects about a
// second after the heal, and etcd's client logs nothing to stderr.
func dial(endpoints ...string) (*clientv3.Client, error) {
	return clientv3.New(etcdclient.Config(endpoints...))
}

// scope owns what a scenario opens: clients, proxies, lockers. close
// closes them in reverse order.
type scope struct {
	e       *env
	mu      sync.Mutex
	closers []func()
}

func (e *env) scope() *scope { return &scope{e: e} }

func (s *scope) defer_(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closers = append(s.closers, f)
}

func (s *scope) close() {
	s.mu.Lock()
	closers := s.closers
	s.closers = nil
	s.mu.Unlock()
	for i := len(closers) - 1; i >= 0; i-- {
		closers[i]()
	}
}

// client returns a client of its own connection to every member, as a
// separate process would have.
func (s *scope) client() (*clientv3.Client, error) {
	var cli *clientv3.Client
	var err error
	if s.e.cluster != nil {
		cli, err = s.e.cluster.NewClient(etcdclient.Config(s.e.cluster.Endpoints()...))
	} else {
		cli, err = dial(s.e.endpoints...)
	}
	if err != nil {
		return nil, err
	}
	s.defer_(func() { cli.Close() })
	return cli, nil
}

// cuttableClient returns a client that reaches etcd only through a TCP
// proxy in front of member i, so that the scenario can cut it off from
// etcd, as a network partition would, while everyone else carries on.
func (s *scope) cuttableClient(i int) (*clientv3.Client, *embedtest.Proxy, error) {
	var p *embedtest.Proxy
	var err error
	if s.e.cluster != nil {
		p, err = s.e.cluster.NewProxy(i % s.e.cluster.Members())
	} else {
		p, err = embedtest.StartProxy(s.e.endpoints[i%len(s.e.endpoints)])
	}
	if err != nil {
		return nil, nil, err
	}
	s.defer_(func() { p.Close() })
	var cli *clientv3.Client
	if s.e.cluster != nil {
		cli, err = s.e.cluster.NewClient(etcdclient.Config(p.Endpoint()))
	} else {
		cli, err = dial(p.Endpoint())
	}
	if err != nil {
		return nil, nil, err
	}
	s.defer_(func() { cli.Close() })
	return cli, p, nil
}

// waitKeys waits until exactly n keys exist under prefix. It watches the
// prefix from now and then reads, as leasekit's queue does, so every
// change wakes it at once; a watch from a past revision could wait for
// etcd's 100ms catch-up loop.
func waitKeys(ctx context.Context, cli *clientv3.Client, prefix string, n int) error {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wch := cli.Watch(wctx, prefix, clientv3.WithPrefix(), clientv3.WithCreatedNotify())
	next := func() error {
		select {
		case wr, ok := <-wch:
			if !ok || wr.Err() != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				return fmt.Errorf("watch %s: %v", prefix, wr.Err())
			}
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if err := next(); err != nil { // the watch is created
		return fmt.Errorf("waiting for %d keys under %s: %w", n, prefix, err)
	}
	for {
		resp, err := cli.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil {
			return err
		}
		if resp.Count == int64(n) {
			return nil
		}
		if err := next(); err != nil {
			return fmt.Errorf("waiting for %d keys under %s: %w", n, prefix, err)
		}
	}
}
