package benchkit

import (
	"context"
	"fmt"
	"time"
)

// Options say how long a comparison runs.
type Options struct {
	// Pairs is how many pairs of rounds run; at least 1.
	Pairs int
	// Round is how long one round of a workload runs (default 500ms).
	Round time.Duration
	// Handovers is how many handovers one round of an election times
	// (default 10).
	Handovers int
	// Settle, if not nil, says how long the next candidate of an
	// election waits in line before the leader resigns; nil resigns as
	// soon as it is in line.
	Settle func() time.Duration
	// Probes is how many ceiling samples are taken after each pair
	// (default 10); negative takes none.
	Probes int
	// Targets are the servers Bench and BenchHandovers run on; nil means
	// every one of Targets().
	Targets []Target
	// Progress, if not nil, is called after each pair.
	Progress func(done, of int)
}

func (o Options) withDefaults() Options {
	o.Pairs = max(o.Pairs, 1)
	if o.Round <= 0 {
		o.Round = 500 * time.Millisecond
	}
	if o.Handovers <= 0 {
		o.Handovers = 10
	}
	if o.Probes == 0 {
		o.Probes = 10
	}
	return o
}

// A Runner runs one round of one side of a comparison.
type Runner func(ctx context.Context) (Round, error)

// Pairs runs a and b in n pairs of rounds, alternating which goes first
// (a b, b a, a b, ...), so that neither always runs on a warmer or a
// cooler machine, and calls between after each pair. It returns the rounds
// of each side, pair by pair. Before the first pair, each side runs one
// round that is not counted, to warm up.
func Pairs(ctx context.Context, n int, a, b Runner, between func(ctx context.Context) error) (as, bs []Round, err error) {
	if _, err := a(ctx); err != nil {
		return nil, nil, fmt.Errorf("warm-up A: %w", err)
	}
	if _, err := b(ctx); err != nil {
		return nil, nil, fmt.Errorf("warm-up B: %w", err)
	}
	for i := range n {
		first, second, fa := a, b, true
		if i%2 == 1 {
			first, second, fa = b, a, false
		}
		r1, err := first(ctx)
		if err != nil {
			return as, bs, fmt.Errorf("pair %d: %w", i+1, err)
		}
		r2, err := second(ctx)
		if err != nil {
			return as, bs, fmt.Errorf("pair %d: %w", i+1, err)
		}
		if !fa {
			r1, r2 = r2, r1
		}
		as, bs = append(as, r1), append(bs, r2)
		if between != nil {
			if err := between(ctx); err != nil {
				return as, bs, err
			}
		}
	}
	return as, bs, nil
}

// Ratios returns a[i].Score / b[i].Score for each pair whose b scored.
func Ratios(a, b []Round) []float64 {
	var rs []float64
	for i := range min(len(a), len(b)) {
		if b[i].Score > 0 {
			rs = append(rs, a[i].Score/b[i].Score)
		}
	}
	return rs
}

// Comparison is a paired comparison of two implementations on one server.
type Comparison struct {
	// Title says what was compared: "mutex, 8 workers, hold 1ms".
	Title string
	// Server is what it ran on.
	Server string
	// A and B name the implementations: A is leasekit's, B the reference.
	A, B string
	// Workload is what the workers did; zero for an election.
	Workload Workload
	// RoundsA and RoundsB are the rounds, pair by pair.
	RoundsA, RoundsB []Round
	// Ceiling is the server's physical limit, measured between pairs.
	Ceiling Ceiling
}

// Ratio returns the spread of A's score over B's, pair by pair.
func (c *Comparison) Ratio() Spread { return Summarize(Ratios(c.RoundsA, c.RoundsB)) }

// OfCeiling returns the spread, over A's rounds, of A's figure as a
// fraction of what the ceiling allows: for a workload, A's rate over
// 1/(mean hold + Event p50), the rate if every handoff took only a
// committed delete and its watch event; for an election, Event p50 over
// the round's p50 handover, since a handover is a revoke and its event.
// It is zero when the workload has no handoffs (not exclusive, or one
// worker) or no ceiling was measured.
func (c *Comparison) OfCeiling() Spread {
	var fs []float64
	switch ev := Percentile(c.Ceiling.Event, 50); {
	case ev == 0:
	case c.election():
		for _, r := range c.RoundsA {
			if p := Percentile(r.Handoffs, 50); p > 0 {
				fs = append(fs, float64(ev)/float64(p))
			}
		}
	case c.Workload.Exclusive && c.Workload.Workers > 1:
		ceil := c.Ceiling.Rate(Mean(pool(c.RoundsA, func(r Round) []time.Duration { return r.Holds })))
		for _, r := range c.RoundsA {
			fs = append(fs, r.Rate()/ceil)
		}
	}
	return Summarize(fs)
}

// pool concatenates what f picks from every round.
func pool(rs []Round, f func(Round) []time.Duration) []time.Duration {
	var ds []time.Duration
	for _, r := range rs {
		ds = append(ds, f(r)...)
	}
	return ds
}

// Side is one implementation's figures over every round of a comparison.
type Side struct {
	Rate                     Spread // takes/s per round
	Takes                    int
	Errs                     int
	Handoff50, Handoff99     time.Duration
	HandoffMax               time.Duration
	Wait50, Wait99           time.Duration
	WriteWait50, WriteWait99 time.Duration
	Resign50                 time.Duration // an election's Resign call
	Hold                     time.Duration // mean hold as slept
	Jain                     float64       // of per-worker counts, over all rounds
	FsyncsPerTake            float64       // -1 if unknown
}

// Sum returns the figures of rounds rs.
func Sum(rs []Round) Side {
	var s Side
	var rates []float64
	var per []int
	fsyncs, known := 0.0, true
	for _, r := range rs {
		rates = append(rates, r.Rate())
		s.Takes += r.Takes
		s.Errs += r.Errs
		if len(per) < len(r.PerWorker) {
			per = append(per, make([]int, len(r.PerWorker)-len(per))...)
		}
		for i, n := range r.PerWorker {
			per[i] += n
		}
		if r.Fsyncs < 0 {
			known = false
		}
		fsyncs += r.Fsyncs
	}
	s.Rate = Summarize(rates)
	handoffs := pool(rs, func(r Round) []time.Duration { return r.Handoffs })
	waits := pool(rs, func(r Round) []time.Duration { return r.Waits })
	writes := pool(rs, func(r Round) []time.Duration { return r.WriteWaits })
	s.Handoff50, s.Handoff99, s.HandoffMax = Percentile(handoffs, 50), Percentile(handoffs, 99), Percentile(handoffs, 100)
	s.Wait50, s.Wait99 = Percentile(waits, 50), Percentile(waits, 99)
	s.WriteWait50, s.WriteWait99 = Percentile(writes, 50), Percentile(writes, 99)
	s.Resign50 = Percentile(pool(rs, func(r Round) []time.Duration { return r.Resigns }), 50)
	s.Hold = Mean(pool(rs, func(r Round) []time.Duration { return r.Holds }))
	s.Jain = Jain(per)
	s.FsyncsPerTake = -1
	if known && s.Takes > 0 {
		s.FsyncsPerTake = fsyncs / float64(s.Takes)
	}
	return s
}

// Compare runs a paired comparison of workload wl between a and b on srv:
// both sets of workers are set up once, then rounds alternate as Pairs
// describes, and the ceiling is probed after each pair.
func Compare(ctx context.Context, srv *Server, title string, a, b Impl, wl Workload, o Options) (*Comparison, error) {
	o = o.withDefaults()
	ca, err := NewCrew(srv, a, wl)
	if err != nil {
		return nil, err
	}
	defer ca.Close()
	cb, err := NewCrew(srv, b, wl)
	if err != nil {
		return nil, err
	}
	defer cb.Close()
	c := &Comparison{Title: title, Server: srv.Name, A: a.Name, B: b.Name, Workload: wl}
	return c, c.run(ctx, srv, o,
		func(ctx context.Context) (Round, error) { return ca.Run(ctx, o.Round) },
		func(ctx context.Context) (Round, error) { return cb.Run(ctx, o.Round) })
}

// run runs the pairs of c, probing the ceiling after each.
func (c *Comparison) run(ctx context.Context, srv *Server, o Options, a, b Runner) error {
	probe, err := c.Ceiling.prober(srv)
	if err != nil {
		return err
	}
	done := 0
	between := func(ctx context.Context) error {
		done++
		if o.Progress != nil {
			o.Progress(done, o.Pairs)
		}
		return probe(ctx, o.Probes)
	}
	if c.RoundsA, c.RoundsB, err = Pairs(ctx, o.Pairs, a, b, between); err != nil {
		return fmt.Errorf("benchkit: %s on %s: %w", c.Title, srv.Name, err)
	}
	return nil
}
