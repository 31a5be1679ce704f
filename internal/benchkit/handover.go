package benchkit

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/leasekit/leasekit/internal/etcderr"
	"github.com/leasekit/leasekit/internal/testkit"
)

// Candidate is one candidate of an election implementation.
type Candidate interface {
	Campaign(ctx context.Context, value string) error
	Resign(ctx context.Context) error
}

// Elector is an election implementation under comparison.
type Elector struct {
	// Name names it: "leasekit".
	Name string
	// Candidate returns a candidate on cli for the election kept under
	// prefix, the key prefix its candidates' keys go under (so that the
	// harness can see the next one in line), and what closes what it
	// opened (nil if nothing).
	Candidate func(cli *clientv3.Client, prefix string) (c Candidate, line string, closeFn func(), err error)
}

// Rotation is two candidates of one implementation, with clients of their
// own, handing leadership back and forth: the leader resigns as soon as
// the other is in line, as when replicas campaign again after each term.
type Rotation struct {
	admin  *clientv3.Client
	cs     [2]Candidate
	line   string
	settle func() time.Duration
	close  []func()
	i      int // handovers so far; cs[i%2] leads
}

// NewRotation sets up two candidates of el on srv, under srv.Prefix +
// el.Name + "/", and makes the first leader.
func NewRotation(ctx context.Context, srv *Server, el Elector) (*Rotation, error) {
	admin, err := srv.Admin()
	if err != nil {
		return nil, err
	}
	r := &Rotation{admin: admin}
	for i := range r.cs {
		cli, err := srv.NewClient()
		if err != nil {
			r.Close()
			return nil, err
		}
		c, line, closeFn, err := el.Candidate(cli, srv.Prefix+el.Name+"/")
		if err != nil {
			r.Close()
			return nil, fmt.Errorf("benchkit: %s candidate: %w", el.Name, err)
		}
		r.cs[i], r.line = c, line
		if closeFn != nil {
			r.close = append(r.close, closeFn)
		}
	}
	if err := r.cs[0].Campaign(ctx, "0"); err != nil {
		r.Close()
		return nil, fmt.Errorf("benchkit: %s first campaign: %w", el.Name, err)
	}
	return r, nil
}

// Step lines the follower up, waits until its key is in etcd (and the
// Settle of the Options given to CompareHandovers), and calls the
// leader's Resign. It returns the handover, from that call until the
// follower's Campaign returns, and how long Resign itself took: the two
// end apart, since the next leader is told by the delete event while the
// resigning one waits for etcd's answer to its own call.
func (r *Rotation) Step(ctx context.Context) (handover, resign time.Duration, err error) {
	leader, next := r.cs[r.i%2], r.cs[(r.i+1)%2]
	r.i++
	won := make(chan time.Time, 1)
	failed := make(chan error, 1)
	go func() {
		if err := next.Campaign(ctx, strconv.Itoa(r.i)); err != nil {
			failed <- err
			return
		}
		won <- time.Now()
	}()
	wait := func(err error) error {
		select {
		case <-won:
			return err
		case cerr := <-failed:
			return errors.Join(err, cerr)
		}
	}
	if err := WaitKeys(ctx, r.admin, r.line, 2); err != nil {
		return 0, 0, wait(err)
	}
	if r.settle != nil {
		// Not a wait for a condition: the scenario is a candidate that
		// has been in line this long.
		etcderr.Sleep(ctx, r.settle())
	}
	start := time.Now()
	if err := leader.Resign(ctx); err != nil {
		return 0, 0, wait(err)
	}
	resign = time.Since(start)
	select {
	case at := <-won:
		return at.Sub(start), resign, nil
	case err := <-failed:
		return 0, 0, err
	}
}

// Run times n handovers as one round, scored by 1/p50 of the handover.
func (r *Rotation) Run(ctx context.Context, n int) (Round, error) {
	var rd Round
	start := time.Now()
	for range n {
		d, resign, err := r.Step(ctx)
		if err != nil {
			return rd, err
		}
		rd.Handoffs = append(rd.Handoffs, d)
		rd.Resigns = append(rd.Resigns, resign)
		rd.Takes++
	}
	rd.Elapsed = time.Since(start)
	rd.Fsyncs = -1
	if p := Percentile(rd.Handoffs, 50); p > 0 {
		rd.Score = 1 / p.Seconds()
	}
	return rd, nil
}

// Close resigns the leader, with a bounded context of its own, and closes
// what the candidates opened.
func (r *Rotation) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if c := r.cs[r.i%2]; c != nil {
		c.Resign(ctx)
	}
	for i := len(r.close) - 1; i >= 0; i-- {
		r.close[i]()
	}
	r.close = nil
}

// CompareHandovers runs a paired comparison of Resign -> the next leader
// between a and b on srv: each round times o.Handovers handovers of one
// implementation, and pairs alternate as Pairs describes.
func CompareHandovers(ctx context.Context, srv *Server, title string, a, b Elector, o Options) (*Comparison, error) {
	o = o.withDefaults()
	ra, err := NewRotation(ctx, srv, a)
	if err != nil {
		return nil, err
	}
	defer ra.Close()
	rb, err := NewRotation(ctx, srv, b)
	if err != nil {
		return nil, err
	}
	defer rb.Close()
	ra.settle, rb.settle = o.Settle, o.Settle
	c := &Comparison{Title: title, Server: srv.Name, A: a.Name, B: b.Name}
	return c, c.run(ctx, srv, o,
		func(ctx context.Context) (Round, error) { return ra.Run(ctx, o.Handovers) },
		func(ctx context.Context) (Round, error) { return rb.Run(ctx, o.Handovers) })
}

// WaitKeys waits until exactly n keys exist under prefix, woken by a
// watch from the current revision (testkit.WaitKeys).
func WaitKeys(ctx context.Context, cli *clientv3.Client, prefix string, n int) error {
	_, err := testkit.WaitKeys(ctx, cli, prefix, func(keys []string) bool { return len(keys) == n })
	return err
}
