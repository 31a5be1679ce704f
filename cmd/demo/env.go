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
	"github.com/leasekit/leasekit/etcdlock"
	"github.com/leasekit/leasekit/internal/benchkit"
)

// waitKeys waits until exactly n keys exist under prefix, woken by a
// watch from the current revision.
var waitKeys = benchkit.WaitKeys

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

	// fsync says whether etcd syncs its log on every commit, as far as
	// the run knows: timings depend on it more than on anything else.
	fsync string
}

// What a run knows of etcd's fsync.
const (
	fsyncOn      = "fsync on"
	fsyncOff     = "fsync off"
	fsyncUnknown = "fsync not known: /metrics did not answer"
)

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
		return fmt.Sprintf("an embedded etcd of %d member(s), %s", e.cluster.Members(), e.fsync)
	}
	return fmt.Sprintf("the etcd cluster at %s, %s", strings.Join(e.endpoints, ","), e.fsync)
}

// mode is setup in brief, for the figures measured against it.
func (e *env) mode() string {
	if e.cluster != nil {
		return fmt.Sprintf("embedded etcd, %d member(s), %s", e.cluster.Members(), e.fsync)
	}
	return "the etcd at --endpoints, " + e.fsync
}

// benchServer is the run's etcd as internal/benchkit sees it: clients of
// their own, keys under the run's prefix. Close it to close its clients.
func (e *env) benchServer() *benchkit.Server {
	newClient := func(cc clientv3.Config) (*clientv3.Client, error) {
		if e.cluster != nil {
			cfg := etcdclient.Config(e.cluster.Endpoints()...)
			cfg.DialOptions = append(cfg.DialOptions, cc.DialOptions...)
			return e.cluster.NewClient(cfg)
		}
		cfg := etcdclient.Config(e.endpoints...)
		cfg.DialOptions = append(cfg.DialOptions, cc.DialOptions...)
		return clientv3.New(cfg)
	}
	return benchkit.NewServer("demo", e.setup(), e.prefix+"bench/", newClient, nil)
}

// detectFsync tells whether the etcd at ep syncs its log on every commit:
// etcd counts WAL fsyncs in its metrics only when it makes them, so one
// write moves the count with fsync on and leaves it with fsync off.
func detectFsync(ctx context.Context, cli *clientv3.Client, ep, prefix string) string {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	before, err := benchkit.ScrapeFsyncs(ctx, ep)
	if err != nil {
		return fsyncUnknown
	}
	if _, err := cli.Put(ctx, prefix+"fsync-probe", ""); err != nil {
		return fsyncUnknown
	}
	after, err := benchkit.ScrapeFsyncs(ctx, ep)
	switch {
	case err != nil:
		return fsyncUnknown
	case after > before:
		return fsyncOn
	}
	return fsyncOff
}

func newRunPrefix() string {
	b := make([]byte, 4)
	rand.Read(b)
	return "/leasekit-demo/" + hex.EncodeToString(b) + "/"
}

// startEmbedded starts the cluster the tour runs on when no --endpoints
// are given. members 0 means three if they start within startBudget,
// else one.
func startEmbedded(ctx context.Context, out *narrator, members int, fsync bool) (*embedtest.Cluster, time.Duration, error) {
	try := func(n int, budget time.Duration) (*embedtest.Cluster, time.Duration, error) {
		sctx, cancel := context.WithTimeout(ctx, budget)
		defer cancel()
		start := time.Now()
		c, err := embedtest.Start(sctx, embedtest.WithMembers(n), embedtest.WithFsync(fsync))
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

// locker returns a Locker on cli under the demo's lock prefix.
func (s *scope) locker(cli *clientv3.Client, opts ...etcdlock.Option) (*etcdlock.Locker, error) {
	l, err := etcdlock.New(cli, append([]etcdlock.Option{etcdlock.WithPrefix(s.e.lockPrefix())}, opts...)...)
	if err != nil {
		return nil, err
	}
	s.defer_(func() { l.Close() })
	return l, nil
}
