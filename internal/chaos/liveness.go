package chaos

import (
	"context"
	"fmt"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"
)

// Watchdog runs calls with a context of their own and reports a call that
// is still running Grace after its context ended: a call that blocks past
// its context. It also measures by how much each kind of call overran.
// It is safe for concurrent use.
type Watchdog struct {
	// Grace is how long a call may run after its context ended. Cleanup
	// that a library does with bounded contexts of its own after the
	// caller's ended counts against it.
	Grace time.Duration
	// Stuck is called, from a goroutine of its own, for each call still
	// running Grace after its context ended, with the stacks of every
	// goroutine. The call may still return later.
	Stuck func(call string, stacks string)

	mu    sync.Mutex
	stats map[string]*CallStats
}

// CallStats describes the calls of one name a Watchdog ran.
type CallStats struct {
	Calls int
	// Late counts calls that returned after their context ended, and
	// MaxOverrun is the longest any of them ran past it.
	Late       int
	MaxOverrun time.Duration
	// Stuck counts calls reported as stuck.
	Stuck int
}

// Do runs f with a context that ends after timeout or with ctx.
func (w *Watchdog) Do(ctx context.Context, name string, timeout time.Duration, f func(ctx context.Context) error) error {
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var (
		mu       sync.Mutex
		returned bool
		ended    time.Time
		timer    *time.Timer
	)
	stop := context.AfterFunc(cctx, func() {
		mu.Lock()
		defer mu.Unlock()
		if returned {
			return
		}
		ended = time.Now()
		timer = time.AfterFunc(w.Grace, func() {
			mu.Lock()
			r := returned
			mu.Unlock()
			if !r {
				w.stuck(name)
			}
		})
	})
	err := f(cctx)
	mu.Lock()
	returned = true
	if timer != nil {
		timer.Stop()
	}
	at := ended
	mu.Unlock()
	stop()

	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.stat(name)
	s.Calls++
	if !at.IsZero() {
		s.Late++
		s.MaxOverrun = max(s.MaxOverrun, time.Since(at))
	}
	return err
}

func (w *Watchdog) stat(name string) *CallStats {
	if w.stats == nil {
		w.stats = map[string]*CallStats{}
	}
	s := w.stats[name]
	if s == nil {
		s = &CallStats{}
		w.stats[name] = s
	}
	return s
}

func (w *Watchdog) stuck(name string) {
	w.mu.Lock()
	w.stat(name).Stuck++
	w.mu.Unlock()
	if w.Stuck != nil {
		w.Stuck(name, Stacks())
	}
}

// Stats returns the statistics of the calls run so far, by name.
func (w *Watchdog) Stats() map[string]CallStats {
	w.mu.Lock()
	defer w.mu.Unlock()
	m := make(map[string]CallStats, len(w.stats))
	for k, v := range w.stats {
		m[k] = *v
	}
	return m
}

// Summary describes Stats in one line per call name.
func (w *Watchdog) Summary() string {
	st := w.Stats()
	names := make([]string, 0, len(st))
	for k := range st {
		names = append(names, k)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, k := range names {
		s := st[k]
		fmt.Fprintf(&b, "  %-10s %6d calls, %5d ran past their context, by at most %v, %d stuck\n",
			k, s.Calls, s.Late, s.MaxOverrun.Round(time.Millisecond), s.Stuck)
	}
	return b.String()
}

// Stacks returns the stacks of every goroutine.
func Stacks() string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return string(buf[:n])
		}
		buf = make([]byte, 2*len(buf))
	}
}

// Progress tracks, for each client, the start time of its latest
// operation that succeeded, so that a test can wait until every client
// made progress after a fault healed. It is safe for concurrent use.
type Progress struct {
	mu      sync.Mutex
	last    []int64
	changed chan struct{}
}

// NewProgress returns a Progress for n clients.
func NewProgress(n int) *Progress {
	last := make([]int64, n)
	for i := range last {
		last[i] = -1
	}
	return &Progress{last: last, changed: make(chan struct{})}
}

// Record notes that an operation of client, started at started, succeeded.
func (p *Progress) Record(client int, started int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if started > p.last[client] {
		p.last[client] = started
		close(p.changed)
		p.changed = make(chan struct{})
	}
}

// Wait waits until every client has succeeded in an operation it started
// at or after since. If ctx ends first it returns the clients that had
// not, with ctx's error.
func (p *Progress) Wait(ctx context.Context, since int64) ([]int, error) {
	for {
		p.mu.Lock()
		var behind []int
		for i, t := range p.last {
			if t < since {
				behind = append(behind, i)
			}
		}
		ch := p.changed
		p.mu.Unlock()
		if len(behind) == 0 {
			return nil, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return behind, ctx.Err()
		}
	}
}
