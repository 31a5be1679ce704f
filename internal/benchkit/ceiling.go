package benchkit

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Ceiling is the physical limit of a handoff on a server, measured in the
// same run as the comparison it bounds. A handoff cannot beat one
// committed delete (the holder's release) plus the delete's watch event
// reaching the next holder, and every contended cycle also needs the
// releaser's put when it lines up again.
type Ceiling struct {
	// Put is a committed Put of a new key: call to response.
	Put []time.Duration
	// Delete is a committed Delete of that key: call to response.
	Delete []time.Duration
	// Event runs from the Delete call to its event reaching a watcher on
	// another client, opened from the current revision (never a past
	// one, which etcd serves from a slower loop).
	Event []time.Duration
}

// Rate returns the most holds per second a lock could grant if each hold
// lasted hold and each handoff took only the p50 of Event: 1/(hold +
// Event p50). It is 0 with no samples.
func (c *Ceiling) Rate(hold time.Duration) float64 {
	ev := Percentile(c.Event, 50)
	if ev == 0 {
		return 0
	}
	return 1 / (hold + ev).Seconds()
}

// Serial returns the most cycles per second the server could commit if
// each cycle's delete and put were committed one after the other: 1/(Put
// p50 + Delete p50). It is 0 with no samples.
func (c *Ceiling) Serial() float64 {
	d := Percentile(c.Put, 50) + Percentile(c.Delete, 50)
	if d == 0 {
		return 0
	}
	return 1 / d.Seconds()
}

// Probe takes n samples of the ceiling on srv, with a writer and a
// watcher on clients of their own.
func (c *Ceiling) Probe(ctx context.Context, srv *Server, n int) error {
	probe, err := c.prober(srv)
	if err != nil {
		return err
	}
	return probe(ctx, n)
}

// prober returns a function that takes n samples of the ceiling on srv.
func (c *Ceiling) prober(srv *Server) (func(ctx context.Context, n int) error, error) {
	writer, err := srv.NewClient()
	if err != nil {
		return nil, err
	}
	watcher, err := srv.NewClient()
	if err != nil {
		return nil, err
	}
	key := srv.Prefix + "ceiling"
	return func(ctx context.Context, n int) error {
		for range n {
			if err := c.sample(ctx, writer, watcher, key); err != nil {
				return fmt.Errorf("benchkit: ceiling: %w", err)
			}
		}
		return nil
	}, nil
}

// sample times one put, then one delete and its event.
func (c *Ceiling) sample(ctx context.Context, writer, watcher *clientv3.Client, key string) error {
	t0 := time.Now()
	if _, err := writer.Put(ctx, key, ""); err != nil {
		return err
	}
	put := time.Since(t0)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wch := watcher.Watch(wctx, key, clientv3.WithCreatedNotify(), clientv3.WithFilterPut())
	if wr, ok := <-wch; !ok || !wr.Created || wr.Err() != nil {
		return fmt.Errorf("watch not created: %v", wr.Err())
	}
	seen := make(chan time.Time, 1)
	go func() {
		defer close(seen)
		for wr := range wch {
			for _, ev := range wr.Events {
				if ev.Type == mvccpb.DELETE {
					seen <- time.Now()
					return
				}
			}
		}
	}()
	t1 := time.Now()
	if _, err := writer.Delete(ctx, key); err != nil {
		return err
	}
	del := time.Since(t1)
	at, ok := <-seen
	if !ok {
		return errors.New("watch ended before the delete's event")
	}
	c.Put = append(c.Put, put)
	c.Delete = append(c.Delete, del)
	c.Event = append(c.Event, at.Sub(t1))
	return nil
}
