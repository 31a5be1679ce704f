package benchkit

import (
	"context"
	"fmt"
	"maps"
	"runtime"
	"runtime/metrics"
	"slices"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
)

// Counter counts the gRPC calls of the clients it is dialled into: unary
// calls by method, and messages sent on streams by method (a Watch
// stream's creates and cancels, a LeaseKeepAlive stream's keepalives).
// It is safe for concurrent use.
type Counter struct {
	mu sync.Mutex
	n  map[string]int
}

// NewCounter returns a Counter at zero.
func NewCounter() *Counter { return &Counter{n: map[string]int{}} }

// DialOptions returns the interceptors to put in clientv3.Config.DialOptions.
func (c *Counter) DialOptions() []grpc.DialOption {
	unary := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn,
		invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		c.add(method)
		return invoker(ctx, method, req, reply, cc, opts...)
	}
	stream := func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string,
		streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		s, err := streamer(ctx, desc, cc, method, opts...)
		if err != nil {
			return nil, err
		}
		return &countedStream{ClientStream: s, c: c, method: method}, nil
	}
	return []grpc.DialOption{grpc.WithChainUnaryInterceptor(unary), grpc.WithChainStreamInterceptor(stream)}
}

type countedStream struct {
	grpc.ClientStream
	c      *Counter
	method string
}

func (s *countedStream) SendMsg(m any) error {
	s.c.add(s.method + " (stream message)")
	return s.ClientStream.SendMsg(m)
}

func (c *Counter) add(method string) {
	c.mu.Lock()
	c.n[method]++
	c.mu.Unlock()
}

// Snapshot returns the counts so far, by method's short name
// ("KV/Txn", "Watch/Watch (stream message)").
func (c *Counter) Snapshot() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]int, len(c.n))
	for m, n := range c.n {
		out[strings.TrimPrefix(m, "/etcdserverpb.")] = n
	}
	return out
}

// Cost is what one take-and-release cost the process on average: gRPC
// calls, heap allocations and goroutines started. Against an embedded
// etcd the allocations and goroutines include the server's; against an
// etcd process they are the client's and the library's alone.
type Cost struct {
	Impl    string
	Takes   int
	Calls   map[string]float64 // per take, by method
	Allocs  float64            // heap objects per take
	Bytes   float64            // heap bytes per take
	Started float64            // goroutines started per take
	Rate    float64            // takes per second in the measured round
}

// Measure runs impl's workload wl on srv for one round of d, after a
// warm-up round, with every worker's client counted, and returns what a
// take cost.
func Measure(ctx context.Context, srv *Server, impl Impl, wl Workload, d time.Duration) (Cost, error) {
	cnt := NewCounter()
	counted := &Server{Name: srv.Name, Prefix: srv.Prefix, fsyncs: srv.fsyncs,
		newClient: func(cc clientv3.Config) (*clientv3.Client, error) {
			cc.DialOptions = append(cc.DialOptions, cnt.DialOptions()...)
			return srv.newClient(cc)
		}}
	defer counted.Close()
	crew, err := NewCrew(counted, impl, wl)
	if err != nil {
		return Cost{}, err
	}
	defer crew.Close()
	if _, err := crew.Run(ctx, d/2); err != nil {
		return Cost{}, err
	}
	calls0 := cnt.Snapshot()
	m0 := readProcess()
	r, err := crew.Run(ctx, d)
	if err != nil {
		return Cost{}, err
	}
	m1 := readProcess()
	calls1 := cnt.Snapshot()
	// The takes granted after d were paid for too.
	takes := r.Takes + r.Late
	c := Cost{Impl: impl.Name, Takes: takes, Calls: map[string]float64{}, Rate: r.Rate()}
	if takes == 0 {
		return c, fmt.Errorf("benchkit: no takes")
	}
	for m, n := range calls1 {
		if more := n - calls0[m]; more > 0 {
			c.Calls[m] = float64(more) / float64(takes)
		}
	}
	c.Allocs = (m1.objects - m0.objects) / float64(takes)
	c.Bytes = (m1.bytes - m0.bytes) / float64(takes)
	c.Started = (m1.started - m0.started) / float64(takes)
	return c, nil
}

// String is the cost on one line, calls sorted by method.
func (c Cost) String() string {
	var calls []string
	for _, m := range slices.Sorted(maps.Keys(c.Calls)) {
		calls = append(calls, fmt.Sprintf("%s %.2f", m, c.Calls[m]))
	}
	return fmt.Sprintf("%s: %.0f takes/s; per take: %s; %.0f allocs, %.0f B, %.2f goroutines started",
		c.Impl, c.Rate, strings.Join(calls, ", "), c.Allocs, c.Bytes, c.Started)
}

type processMetrics struct{ objects, bytes, started float64 }

// readProcess reads the process's cumulative allocations and goroutines
// started.
func readProcess() processMetrics {
	runtime.GC() // flush the per-P allocation counts
	s := []metrics.Sample{
		{Name: "/gc/heap/allocs:objects"},
		{Name: "/gc/heap/allocs:bytes"},
		{Name: "/sched/goroutines-created:goroutines"},
	}
	metrics.Read(s)
	v := func(i int) float64 {
		if s[i].Value.Kind() == metrics.KindUint64 {
			return float64(s[i].Value.Uint64())
		}
		return 0
	}
	return processMetrics{objects: v(0), bytes: v(1), started: v(2)}
}
