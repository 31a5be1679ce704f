package benchkit

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/leasekit/leasekit/internal/etcderr"
)

// Release gives a hold back.
type Release func(ctx context.Context) error

// Take takes one hold and returns how to give it back. write asks for the
// exclusive side of a read-write lock; other locks ignore it.
type Take func(ctx context.Context, write bool) (Release, error)

// Impl is one implementation under comparison.
type Impl struct {
	// Name names it in benchmark names and the table: "leasekit".
	Name string
	// Worker returns how one worker takes holds, on a client of its own,
	// keeping its keys under prefix, and what closes what it opened
	// (nil if nothing).
	Worker func(cli *clientv3.Client, prefix string) (Take, func(), error)
}

// Workload is what the workers of a round do: each loops take, hold,
// release on one name.
type Workload struct {
	// Workers is how many take holds at once, each with a client of its
	// own, as separate processes would. 1 is the uncontended cycle.
	Workers int
	// Hold is how long each hold lasts (a sleep: the work done under it).
	Hold time.Duration
	// WriteEvery makes every WriteEvery-th take, counted across workers,
	// ask to write; 0 makes none.
	WriteEvery int
	// Exclusive says holds exclude each other (a mutex, a semaphore of
	// 1), so that a release hands over to the next holder: the round then
	// times handoffs, and the ceiling applies.
	Exclusive bool
}

// Round is what one round of a workload measured.
type Round struct {
	// Takes is the holds granted within the round's time.
	Takes int
	// Late is the holds granted after it, to waits in progress then.
	Late int
	// Elapsed is the round's time: takes after it are not counted.
	Elapsed time.Duration
	// Errs counts failed takes and releases; a failed take is retried.
	Errs int
	// Waits runs from asking to holding; WriteWaits is the same for the
	// takes that asked to write.
	Waits, WriteWaits []time.Duration
	// Handoffs runs from a holder calling Release to the next holder's
	// take returning: Exclusive workloads only. For an election, from the
	// leader calling Resign to the next candidate's Campaign returning.
	Handoffs []time.Duration
	// Resigns, for an election, runs from the leader calling Resign to
	// Resign returning.
	Resigns []time.Duration
	// Holds is how long holds lasted, hold time as slept (a sleep
	// overshoots).
	Holds []time.Duration
	// PerWorker is each worker's count of takes.
	PerWorker []int
	// Fsyncs is the server's WAL fsyncs during the round, -1 if unknown.
	Fsyncs float64
	// Score is what pairs compare, higher being better: takes per second
	// for a workload, 1/p50 of the handover for an election.
	Score float64
}

// Rate returns takes per second.
func (r Round) Rate() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Takes) / r.Elapsed.Seconds()
}

// Crew is the workers of one implementation on one server, set up once and
// run for as many rounds as needed.
type Crew struct {
	srv   *Server
	wl    Workload
	takes []Take
	close []func()
}

// NewCrew sets up wl.Workers workers of impl on srv, each on a client of
// its own, keeping keys under srv.Prefix + impl.Name + "/".
func NewCrew(srv *Server, impl Impl, wl Workload) (*Crew, error) {
	if wl.Workers < 1 {
		return nil, fmt.Errorf("benchkit: %d workers", wl.Workers)
	}
	c := &Crew{srv: srv, wl: wl}
	for range wl.Workers {
		cli, err := srv.NewClient()
		if err != nil {
			c.Close()
			return nil, err
		}
		take, closeFn, err := impl.Worker(cli, srv.Prefix+impl.Name+"/")
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("benchkit: %s worker: %w", impl.Name, err)
		}
		c.takes = append(c.takes, take)
		if closeFn != nil {
			c.close = append(c.close, closeFn)
		}
	}
	return c, nil
}

// Close closes what the workers opened. Their clients close with the
// server.
func (c *Crew) Close() {
	for i := len(c.close) - 1; i >= 0; i-- {
		c.close[i]()
	}
	c.close = nil
}

// Run runs one round of d: every worker loops take, hold, release. Takes
// that return after d are not counted, and workers stop asking then; waits
// in progress run to their turn, since cancelling them would measure
// cleanup rather than handoffs. A failed take is counted in Errs and
// tried again after a short pause; Run fails only if ctx ends or every
// take of the round failed.
func (c *Crew) Run(ctx context.Context, d time.Duration) (Round, error) {
	fs0, fsOK := c.srv.WALFsyncs(ctx)
	var (
		mu          sync.Mutex
		r           = Round{PerWorker: make([]int, len(c.takes))}
		asked       atomic.Int64
		lastRelease atomic.Int64 // unix nanos of the latest release call; 0 if none yet
		wg          sync.WaitGroup
	)
	start := time.Now()
	end := start.Add(d)
	for w, take := range c.takes {
		wg.Go(func() {
			for ctx.Err() == nil && time.Now().Before(end) {
				n := asked.Add(1)
				write := c.wl.WriteEvery > 0 && n%int64(c.wl.WriteEvery) == 0
				t0 := time.Now()
				release, err := take(ctx, write)
				if err != nil {
					mu.Lock()
					r.Errs++
					mu.Unlock()
					etcderr.Sleep(ctx, 20*time.Millisecond)
					continue
				}
				at := time.Now()
				var handoff time.Duration
				if prev := lastRelease.Load(); c.wl.Exclusive && prev != 0 {
					handoff = at.Sub(time.Unix(0, prev))
				}
				etcderr.Sleep(ctx, c.wl.Hold)
				held := time.Since(at)
				if !at.Before(end) {
					mu.Lock()
					r.Late++
					mu.Unlock()
				} else {
					mu.Lock()
					r.Takes++
					r.PerWorker[w]++
					r.Waits = append(r.Waits, at.Sub(t0))
					if write {
						r.WriteWaits = append(r.WriteWaits, at.Sub(t0))
					}
					if handoff > 0 {
						r.Handoffs = append(r.Handoffs, handoff)
					}
					r.Holds = append(r.Holds, held)
					mu.Unlock()
				}
				lastRelease.Store(time.Now().UnixNano())
				if err := release(ctx); err != nil {
					mu.Lock()
					r.Errs++
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	r.Elapsed = d
	r.Score = r.Rate()
	r.Fsyncs = -1
	if fs1, ok := c.srv.WALFsyncs(ctx); ok && fsOK {
		r.Fsyncs = fs1 - fs0
	}
	if err := ctx.Err(); err != nil {
		return r, err
	}
	if r.Takes == 0 && r.Errs > 0 {
		return r, errors.New("benchkit: every take of the round failed")
	}
	return r, nil
}
