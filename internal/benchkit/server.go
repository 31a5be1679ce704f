package benchkit

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/leasekit/leasekit/embedtest"
	"github.com/leasekit/leasekit/etcdclient"
)

// EndpointsEnv names the environment variable that adds a real etcd to
// the servers every comparison runs on: host:port[,host:port...].
const EndpointsEnv = "LEASEKIT_BENCH_ENDPOINTS"

// Server is an etcd that comparisons run on.
type Server struct {
	// Name is short, for benchmark names and the table: "fsync-on".
	Name string
	// About says what it is, for the table's heading.
	About string
	// Prefix is a key prefix of this run's own, ending in '/'. Every
	// implementation keeps its keys under it.
	Prefix string

	newClient func(cfg clientv3.Config) (*clientv3.Client, error)
	fsyncs    func(ctx context.Context) (float64, error)

	mu      sync.Mutex
	clients []*clientv3.Client
	admin   *clientv3.Client
	closers []func() error
}

// NewServer makes a Server of an etcd that something else started.
// newClient returns a client with a connection of its own, as a separate
// process would have, with cfg's settings added (DialOptions, say). fsyncs,
// if not nil, returns how many WAL fsyncs the server has made so far.
// Close closes every client made through the Server, then runs closers.
func NewServer(name, about, prefix string, newClient func(cfg clientv3.Config) (*clientv3.Client, error),
	fsyncs func(ctx context.Context) (float64, error), closers ...func() error) *Server {
	return &Server{Name: name, About: about, Prefix: prefix, newClient: newClient, fsyncs: fsyncs, closers: closers}
}

// NewClient returns a client with a connection of its own; cfg, if
// given, adds to the defaults. The Server closes it on Close.
func (s *Server) NewClient(cfg ...clientv3.Config) (*clientv3.Client, error) {
	var cc clientv3.Config
	if len(cfg) > 0 {
		cc = cfg[0]
	}
	cli, err := s.newClient(cc)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.clients = append(s.clients, cli)
	s.mu.Unlock()
	return cli, nil
}

// Admin returns a client for the harness's own reads and writes.
func (s *Server) Admin() (*clientv3.Client, error) {
	s.mu.Lock()
	admin := s.admin
	s.mu.Unlock()
	if admin != nil {
		return admin, nil
	}
	cli, err := s.NewClient()
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.admin = cli
	s.mu.Unlock()
	return cli, nil
}

// WALFsyncs returns how many times the server has synced its write-ahead
// log to disk, from etcd's etcd_disk_wal_fsync_duration_seconds metric,
// which etcd observes only for a real fsync: with fsync off it stays
// still. ok is false if the server does not say.
func (s *Server) WALFsyncs(ctx context.Context) (n float64, ok bool) {
	if s.fsyncs == nil {
		return 0, false
	}
	n, err := s.fsyncs(ctx)
	return n, err == nil
}

// Close closes the clients made through the Server, then runs the
// closers it was made with (which stop an embedded etcd, say).
func (s *Server) Close() error {
	s.mu.Lock()
	clients, closers := s.clients, s.closers
	s.clients, s.closers, s.admin = nil, nil, nil
	s.mu.Unlock()
	for _, c := range clients {
		c.Close()
	}
	var errs []error
	for i := len(closers) - 1; i >= 0; i-- {
		errs = append(errs, closers[i]())
	}
	return errors.Join(errs...)
}

// Target is a server comparisons can run on, not yet started.
type Target struct {
	// Name is as for Server.Name: "fsync-on", "fsync-off" or "etcd".
	Name  string
	start func(ctx context.Context) (*Server, error)
}

// Start starts the target and returns it as a Server; the caller closes it.
func (t Target) Start(ctx context.Context) (*Server, error) { return t.start(ctx) }

// StartTB starts the target for a benchmark or test, which fails if it
// cannot; the Server closes with it.
func (t Target) StartTB(tb testing.TB) *Server {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, err := t.Start(ctx)
	if err != nil {
		tb.Fatalf("benchkit: start %s: %v", t.Name, err)
	}
	tb.Cleanup(func() {
		if err := s.Close(); err != nil {
			tb.Errorf("benchkit: close %s: %v", t.Name, err)
		}
	})
	return s
}

// Targets returns the servers every comparison runs on: an embedded
// one-member etcd with fsync on (the headline: what users run), the same
// with fsync off, and the etcd at $LEASEKIT_BENCH_ENDPOINTS if it is set.
func Targets() []Target {
	ts := []Target{Embedded(true), Embedded(false)}
	if eps := os.Getenv(EndpointsEnv); eps != "" {
		ts = append(ts, Endpoints(strings.Split(eps, ",")...))
	}
	return ts
}

// Embedded is an embedded one-member etcd (embedtest), with fsync on or
// off. With fsync on, etcd syncs its write-ahead log and its backend on
// every commit, as a production etcd does.
func Embedded(fsync bool) Target {
	name := "fsync-off"
	if fsync {
		name = "fsync-on"
	}
	return Target{Name: name, start: func(ctx context.Context) (*Server, error) {
		c, err := embedtest.Start(ctx, embedtest.WithFsync(fsync))
		if err != nil {
			return nil, err
		}
		about := "embedded etcd (embedtest), 1 member, fsync " + map[bool]string{true: "on", false: "off"}[fsync]
		newClient := func(cc clientv3.Config) (*clientv3.Client, error) { return c.NewClient(cc) }
		return NewServer(name, about, "/leasekit-bench/", newClient, EmbeddedFsyncs, c.Close), nil
	}}
}

// EmbeddedFsyncs reads the WAL fsync count of the etcd servers in this
// process, which register their metrics with Prometheus's default
// registry: for NewServer. Benchmarks run one server at a time, so deltas
// are its own.
func EmbeddedFsyncs(context.Context) (float64, error) {
	mfs, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		return 0, err
	}
	for _, mf := range mfs {
		if mf.GetName() != walFsyncMetric {
			continue
		}
		var n float64
		for _, m := range mf.GetMetric() {
			n += float64(m.GetHistogram().GetSampleCount())
		}
		return n, nil
	}
	return 0, fmt.Errorf("no %s metric", walFsyncMetric)
}

const walFsyncMetric = "etcd_disk_wal_fsync_duration_seconds"

// Endpoints is the etcd at the given host:port addresses, plain http,
// which something else runs. Its keys go under a prefix of the run's own,
// deleted on Close.
func Endpoints(eps ...string) Target {
	var clean []string
	for _, ep := range eps {
		if ep = strings.TrimPrefix(strings.TrimSpace(ep), "http://"); ep != "" {
			clean = append(clean, ep)
		}
	}
	return Target{Name: "etcd", start: func(ctx context.Context) (*Server, error) {
		if len(clean) == 0 {
			return nil, errors.New("benchkit: no endpoints")
		}
		dial := func(cc clientv3.Config) (*clientv3.Client, error) {
			// leasekit's recommended settings, as users are told to dial.
			cfg := etcdclient.Config(clean...)
			cfg.DialOptions = append(cfg.DialOptions, cc.DialOptions...)
			return clientv3.New(cfg)
		}
		b := make([]byte, 4)
		rand.Read(b)
		prefix := "/leasekit-bench/" + hex.EncodeToString(b) + "/"
		removeKeys := func() error {
			cli, err := dial(clientv3.Config{})
			if err != nil {
				return err
			}
			defer cli.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_, err = cli.Delete(ctx, prefix, clientv3.WithPrefix())
			return err
		}
		fsyncs := func(ctx context.Context) (float64, error) { return ScrapeFsyncs(ctx, clean[0]) }
		s := NewServer("etcd", "etcd at "+strings.Join(clean, ","), prefix, dial, fsyncs, removeKeys)
		admin, err := s.Admin()
		if err == nil {
			var resp *clientv3.StatusResponse
			if resp, err = admin.Status(ctx, clean[0]); err == nil {
				s.About = fmt.Sprintf("etcd %s at %s", resp.Version, strings.Join(clean, ","))
			}
		}
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("benchkit: etcd at %s: %w", strings.Join(clean, ","), err)
		}
		return s, nil
	}}
}

// scrapeClient keeps no idle connection, which would outlive the test
// binary's leak check.
var scrapeClient = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}

// ScrapeFsyncs reads the WAL fsync count from /metrics of the member at
// ep (host:port, plain http), where etcd serves its metrics by default.
func ScrapeFsyncs(ctx context.Context, ep string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+ep+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := scrapeClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), walFsyncMetric+"_count "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("no %s_count in %s/metrics", walFsyncMetric, ep)
}
