package etcdclient_test

import (
	"context"
	"io"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/leasekit/leasekit/embedtest"
	"github.com/leasekit/leasekit/etcdclient"
)

// BenchmarkReconnect measures how long a client takes to serve a request
// once the network is back, with clientv3's defaults (plus a no-op
// logger) and with etcdclient.Config. The figure is reconnect-s: seconds
// from the heal (the network's return) to a Get's answer. Run it alone, on an idle machine:
//
//	go test -run '^$' -bench Reconnect -benchtime 3x ./etcdclient
//
// The scenarios:
//   - cut: a client in use is cut off by an embedtest proxy for 2.5s with
//     a Get in flight, then healed;
//   - handshake: a client is created while its proxy is cut, so its first
//     connect attempt is swallowed, and the proxy heals 2.5s later.
//     embedtest's Heal closes connections that lost bytes, so the attempt
//     fails at the heal and gRPC retries after its backoff;
//   - flapping: as handshake, but the network comes back for only 0.25s
//     between four 2.5s cuts before it stays: each connect attempt fails,
//     and gRPC's backoff grows after each failure;
//   - silent: the first connect attempt is swallowed by a peer that never
//     answers and never closes, as after a partition that dropped the
//     handshake (the network is back at once; other connections work).
//     The client waits until gRPC gives the attempt up: 20s by default.
//
// Measured once (-benchtime 1x) on a shared 2-core machine; the figures
// are timeouts and backoffs, not CPU work: cut 0.03s with either;
// handshake 1.0s with defaults, 0.2-0.3s with etcdclient; flapping the
// same; silent 21s with defaults, 1.1s with etcdclient.
func BenchmarkReconnect(b *testing.B) {
	c := embedtest.New(b)
	configs := []struct {
		name string
		cfg  func(endpoint string) clientv3.Config
	}{
		{"defaults", func(ep string) clientv3.Config {
			return clientv3.Config{Endpoints: []string{ep}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()}
		}},
		{"etcdclient", func(ep string) clientv3.Config { return etcdclient.Config(ep) }},
	}
	const (
		cutFor = 2500 * time.Millisecond
		flapUp = 250 * time.Millisecond
	)
	// Each scenario sets up a client with cfg, cuts it off, heals, and
	// returns how long after the heal a Get answered.
	scenarios := []struct {
		name string
		run  func(b *testing.B, cfg func(string) clientv3.Config) time.Duration
	}{
		{"cut", func(b *testing.B, cfg func(string) clientv3.Config) time.Duration {
			p := newProxy(b, c)
			defer p.Close()
			cli := newClient(b, cfg(p.Endpoint()))
			defer cli.Close()
			get(b, cli)
			p.Cut()
			return healAfter(b, cli, cutFor, p.Heal)
		}},
		{"handshake", func(b *testing.B, cfg func(string) clientv3.Config) time.Duration {
			p := newProxy(b, c)
			defer p.Close()
			p.Cut()
			cli := newClient(b, cfg(p.Endpoint()))
			defer cli.Close()
			return healAfter(b, cli, cutFor, p.Heal)
		}},
		{"flapping", func(b *testing.B, cfg func(string) clientv3.Config) time.Duration {
			// Created during a cut, then four short windows of network
			// between 2.5s cuts: each attempt the client makes falls in a
			// cut and fails, and gRPC backs off longer after each.
			p := newProxy(b, c)
			defer p.Close()
			p.Cut()
			cli := newClient(b, cfg(p.Endpoint()))
			defer cli.Close()
			for range 4 {
				wait(cutFor)
				p.Heal()
				wait(flapUp)
				p.Cut()
			}
			return healAfter(b, cli, cutFor, p.Heal)
		}},
		{"silent", func(b *testing.B, cfg func(string) clientv3.Config) time.Duration {
			f := newSwallowFirst(b, c.Member(0).ClientURL())
			defer f.close()
			cli := newClient(b, cfg(f.endpoint()))
			defer cli.Close()
			return healAfter(b, cli, 0, func() {})
		}},
	}
	for _, cf := range configs {
		for _, sc := range scenarios {
			b.Run(sc.name+"/"+cf.name, func(b *testing.B) {
				var total time.Duration
				for b.Loop() {
					total += sc.run(b, cf.cfg)
				}
				b.ReportMetric(total.Seconds()/float64(b.N), "reconnect-s")
			})
		}
	}
}

// wait is the benchmark's schedule, not a wait for a condition.
func wait(d time.Duration) { time.Sleep(d) }

func newProxy(b *testing.B, c *embedtest.Cluster) *embedtest.Proxy {
	p, err := c.NewProxy(0)
	if err != nil {
		b.Fatal(err)
	}
	return p
}

func newClient(b *testing.B, cfg clientv3.Config) *clientv3.Client {
	cli, err := clientv3.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	return cli
}

func get(b *testing.B, cli *clientv3.Client) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := cli.Get(ctx, "k"); err != nil {
		b.Fatal(err)
	}
}

// healAfter starts a Get, heals after cutFor (the benchmark's schedule,
// not a wait for a condition) and returns how long after the heal the
// Get answered.
func healAfter(b *testing.B, cli *clientv3.Client, cutFor time.Duration, heal func()) time.Duration {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := cli.Get(ctx, "k")
		done <- err
	}()
	select {
	case <-time.After(cutFor):
	case err := <-done:
		b.Fatalf("Get answered during the cut: %v", err)
	}
	heal()
	healed := time.Now()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	return time.Since(healed)
}

// swallowFirst is a TCP forwarder to target whose first connection is
// accepted and then ignored: it reads and discards, never answers and
// never closes until close. Later connections are forwarded.
type swallowFirst struct {
	target string
	ln     net.Listener
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  []net.Conn
}

func newSwallowFirst(b *testing.B, target string) *swallowFirst {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	u, err := url.Parse(target)
	if err != nil {
		b.Fatal(err)
	}
	f := &swallowFirst{target: u.Host, ln: ln}
	f.wg.Add(1)
	go f.accept()
	return f
}

func (f *swallowFirst) endpoint() string { return f.ln.Addr().String() }

func (f *swallowFirst) accept() {
	defer f.wg.Done()
	for first := true; ; first = false {
		conn, err := f.ln.Accept()
		if err != nil {
			return
		}
		f.track(conn)
		if first {
			f.wg.Add(1)
			go func() {
				defer f.wg.Done()
				io.Copy(io.Discard, conn)
			}()
			continue
		}
		server, err := net.Dial("tcp", f.target)
		if err != nil {
			conn.Close()
			continue
		}
		f.track(server)
		f.wg.Add(2)
		go f.pipe(conn, server)
		go f.pipe(server, conn)
	}
}

func (f *swallowFirst) track(c net.Conn) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.conns = append(f.conns, c)
}

func (f *swallowFirst) pipe(dst, src net.Conn) {
	defer f.wg.Done()
	io.Copy(dst, src)
	dst.Close()
	src.Close()
}

func (f *swallowFirst) close() {
	f.ln.Close()
	f.mu.Lock()
	for _, c := range f.conns {
		c.Close()
	}
	f.mu.Unlock()
	f.wg.Wait()
}
