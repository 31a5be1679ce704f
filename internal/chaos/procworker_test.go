package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/leasekit/leasekit/election"
	"github.com/leasekit/leasekit/etcdlock"
	"github.com/leasekit/leasekit/internal/lease"
)

// The process-level fault test (process_linux_test.go) runs its lock
// holders and candidates as separate processes: this test binary again,
// with workerEnv set to a procConfig in JSON. TestMain hands such a
// process to procWorkerMain instead of running the tests. A worker loops
// like the in-process workers of this package, reports on stdout, one
// JSON procEvent a line, and on SIGTERM finishes its hold, releases, and
// exits 0.
const workerEnv = "LEASEKIT_CHAOS_WORKER"

// Names of the lock and of the election the process workers take.
const (
	procLockName = "chaos/process"
	procElection = "chaos-process"
)

// refusalBound is how long a worker waits, after etcd refused a write
// for its guard, for Done to close: a refusal means the hold is gone, and
// the holder must find out.
const refusalBound = 3 * time.Second

// procConfig is what a worker process is told by its parent.
type procConfig struct {
	Kind        string   // "lock" or "election"
	ID          int      // the worker's client number in the history
	Endpoints   []string // etcd's client URLs
	Prefix      string   // where the counter and the write records live
	Base        int64    // Unix nanoseconds: the zero of the shared clock
	Seed        int64
	TTL         time.Duration
	AutoRefresh bool // lock workers: AutoRefresh instead of a TTL lock
}

// procEvent is one line of a worker's report.
type procEvent struct {
	// Ev is "ready" (connected), "write" (a guarded write, with Attempt),
	// "hold" (a hold that ended, with Hold), "stuck" (a call outlived its
	// context; Detail names it) or "exit" (stopped on SIGTERM; Detail
	// sums up its calls and outcomes).
	Ev string `json:"ev"`

	Attempt *Attempt `json:"attempt,omitempty"`
	// Call is when the write was sent, HoldAt its hold's AcqCall.
	Call   int64 `json:"call,omitempty"`
	HoldAt int64 `json:"hold_at,omitempty"`
	// DoneBefore: Done was already closed when the write was sent.
	DoneBefore bool `json:"done_before,omitempty"`

	Hold *Hold `json:"hold,omitempty"`
	// DoneAt is when the hold's Done was seen closed; before
	// Hold.ReleaseCall when the holder learnt of a loss by itself.
	DoneAt int64 `json:"done_at,omitempty"`
	// Lost: Err wrapped ErrLockLost (ErrLost) before the hold was given
	// up. NotHeld: Release returned ErrNotHeld. ReleaseErr is Release's
	// error.
	Lost       bool   `json:"lost,omitempty"`
	NotHeld    bool   `json:"not_held,omitempty"`
	ReleaseErr string `json:"release_err,omitempty"`
	// Refused counts writes of the hold refused for its guard; after the
	// first, the worker waited up to refusalBound for Done, and
	// DoneAfterRefusal says whether it closed.
	Refused          int  `json:"refused,omitempty"`
	DoneAfterRefusal bool `json:"done_after_refusal,omitempty"`

	Detail string `json:"detail,omitempty"`
}

// eventOut writes a worker's events to stdout, one line each. Lines are
// far below the pipe's atomic write size.
type eventOut struct {
	mu  sync.Mutex
	enc *json.Encoder
}

func (o *eventOut) emit(ev procEvent) {
	o.mu.Lock()
	defer o.mu.Unlock()
	_ = o.enc.Encode(ev)
}

// procWorkerMain runs a worker process if workerEnv asks for one: ok is
// false otherwise. code is the process's exit status.
func procWorkerMain() (code int, ok bool) {
	v := os.Getenv(workerEnv)
	if v == "" {
		return 0, false
	}
	var cfg procConfig
	if err := json.Unmarshal([]byte(v), &cfg); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", workerEnv, err)
		return 2, true
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	if err := runProcWorker(ctx, cfg, &eventOut{enc: json.NewEncoder(os.Stdout)}); err != nil {
		fmt.Fprintf(os.Stderr, "worker %d: %v\n", cfg.ID, err)
		return 1, true
	}
	return 0, true
}

// procWorker is the state of one worker process.
type procWorker struct {
	cfg   procConfig
	out   *eventOut
	clock *Clock
	wd    *Watchdog
	rng   *rand.Rand
	cli   *clientv3.Client
	stats tally
	seq   int
}

func runProcWorker(ctx context.Context, cfg procConfig, out *eventOut) error {
	cli, err := clientv3.New(clientv3.Config{Endpoints: cfg.Endpoints, DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return err
	}
	defer cli.Close()
	w := &procWorker{
		cfg: cfg, out: out, cli: cli, rng: rand.New(rand.NewSource(cfg.Seed)),
		// A clock without a monotonic reading: time.Since on it reads the
		// wall clock, which the parent and every worker share.
		clock: &Clock{start: time.Unix(0, cfg.Base)},
	}
	w.wd = &Watchdog{Grace: grace, Stuck: func(call, stacks string) {
		fmt.Fprintf(os.Stderr, "worker %d: a %s call is still running %v after its context ended; goroutines:\n%s",
			cfg.ID, call, grace, stacks)
		out.emit(procEvent{Ev: "stuck", Detail: call})
	}}
	switch cfg.Kind {
	case "lock":
		err = w.runLock(ctx)
	case "election":
		err = w.runElection(ctx)
	default:
		err = fmt.Errorf("unknown worker kind %q", cfg.Kind)
	}
	if err != nil {
		return err
	}
	out.emit(procEvent{Ev: "exit", Detail: w.wd.Summary() + w.stats.String()})
	return nil
}

// work stands for what a holder does between its writes: a pause of its
// own, so that the parent's SIGSTOP often lands inside a hold. It waits
// for nothing.
func (w *procWorker) work() {
	time.Sleep(5*time.Millisecond + time.Duration(w.rng.Intn(20))*time.Millisecond)
}

func (w *procWorker) recordKey() string {
	w.seq++
	return fmt.Sprintf("%srecords/%d-%06d", w.cfg.Prefix, w.cfg.ID, w.seq)
}

// doneWatch records when done closes. Its goroutine ends when done closes
// or stop is called; stop returns the time, or Never (or a time after the
// call) if done closed only as stop was called.
type doneWatch struct {
	at   chan int64
	quit chan struct{}
}

func (w *procWorker) watchDone(done <-chan struct{}) *doneWatch {
	d := &doneWatch{at: make(chan int64, 1), quit: make(chan struct{})}
	go func() {
		select {
		case <-done:
			d.at <- w.clock.Now()
		case <-d.quit:
			d.at <- Never
		}
	}()
	return d
}

func (d *doneWatch) stop() int64 {
	close(d.quit)
	return <-d.at
}

// awaitDone waits up to refusalBound for done to close.
func awaitDone(done <-chan struct{}) bool {
	t := time.NewTimer(refusalBound)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// guardedWrites does one to three guarded increments, each after some
// work, whatever Done says: the guard alone must keep a holder that
// missed its loss from writing. It stops at the first write that does not
// commit and returns the time of the last commit's call and how many
// writes were refused for the guard.
func (w *procWorker) guardedWrites(ctx context.Context, token, acqCall int64, done <-chan struct{},
	commit commitFunc, floor func()) (alive int64, refused int) {
	alive = acqCall
	for range 1 + w.rng.Intn(3) {
		w.work()
		doneBefore := isClosed(done)
		a, call, tried, err := incrementCounter(ctx, w.wd, w.clock, w.cli, w.cfg.Prefix+"counter", commit,
			Attempt{Key: w.recordKey(), Client: w.cfg.ID, Token: token})
		floor()
		if err != nil {
			fmt.Fprintf(os.Stderr, "worker %d: %v\n", w.cfg.ID, err)
		}
		if !tried {
			w.stats.add("write: read failed")
			return alive, refused
		}
		w.stats.add("write: " + a.Outcome.String())
		w.out.emit(procEvent{Ev: "write", Attempt: &a, Call: call, HoldAt: acqCall, DoneBefore: doneBefore})
		if a.Outcome != Committed {
			if a.Outcome == Rejected {
				refused++
			}
			return alive, refused
		}
		alive = call
	}
	return alive, refused
}

func (w *procWorker) runLock(ctx context.Context) error {
	l, err := etcdlock.New(w.cli, etcdlock.WithMetadata(map[string]string{clientMeta: strconv.Itoa(w.cfg.ID)}))
	if err != nil {
		return err
	}
	w.out.emit(procEvent{Ev: "ready"})
	repeat(ctx, func(ctx context.Context) bool { return w.lockOnce(ctx, l) })
	return l.Close()
}

// lockOnce takes the lock, does guarded writes and releases it. It
// reports whether a write committed.
func (w *procWorker) lockOnce(ctx context.Context, l *etcdlock.Locker) bool {
	opts := etcdlock.LockOptions{Key: procLockName, TTL: w.cfg.TTL, AutoRefresh: w.cfg.AutoRefresh}
	var lk etcdlock.Lock
	acqCall := w.clock.Now()
	err := w.wd.Do(ctx, "Lock", acquireTimeout, func(ctx context.Context) (err error) {
		lk, err = l.LockWithOptions(ctx, opts)
		return err
	})
	acqRet := w.clock.Now()
	if err != nil {
		w.stats.add("lock: " + classify(err))
		return false
	}
	dw := w.watchDone(lk.Done())
	h := Hold{Client: w.cfg.ID, Token: lk.Token(), AcqCall: acqCall, AcqRet: acqRet, LeaseFloor: acqCall, ReleaseCall: Never}
	floor := func() {
		h.LeaseFloor = max(h.LeaseFloor, w.clock.At(lk.ExpiresAt())-int64(lease.Margin(lk.TTL())))
	}
	floor()
	bg := context.WithoutCancel(ctx) // the hold is finished even after SIGTERM
	var refused int
	h.Alive, refused = w.guardedWrites(bg, lk.Token(), acqCall, lk.Done(), guardedBy(w.cli, lk.Guard()), floor)
	ev := procEvent{Ev: "hold", Refused: refused}
	if refused > 0 {
		ev.DoneAfterRefusal = awaitDone(lk.Done())
	}
	ev.Lost = errors.Is(lk.Err(), etcdlock.ErrLockLost)
	h.ReleaseCall = w.clock.Now()
	err = w.wd.Do(bg, "Release", opTimeout, lk.Release)
	h.ReleaseRet = w.clock.Now()
	h.Released = err == nil
	if err != nil {
		w.stats.add("release: " + classify(err))
		ev.ReleaseErr, ev.NotHeld = err.Error(), errors.Is(err, etcdlock.ErrNotHeld)
	}
	ev.Hold, ev.DoneAt = &h, dw.stop()
	w.out.emit(ev)
	return h.Alive > acqCall
}

func (w *procWorker) runElection(ctx context.Context) error {
	e, err := election.New(w.cli, procElection, election.WithTTL(w.cfg.TTL), election.WithValue(strconv.Itoa(w.cfg.ID)))
	if err != nil {
		return err
	}
	w.out.emit(procEvent{Ev: "ready"})
	// A term is won after Run starts, and after the duties of this
	// candidate's previous term returned: Run campaigns only then.
	since := w.clock.Now()
	err = e.Run(ctx, election.Callbacks{OnStartedLeading: func(dctx context.Context) {
		since = w.lead(ctx, dctx, e, since)
	}})
	if ctx.Err() != nil {
		// The last resignation may fail on its way out; the term's lease
		// ends it all the same, which the parent checks.
		if err != nil {
			w.stats.add("run: " + classify(err))
		}
		return nil
	}
	return err
}

// lead is a term's duties: guarded writes with Election.Txn. It returns
// when they end, which Run follows with a resignation.
func (w *procWorker) lead(ctx, dctx context.Context, e *election.Election, acqCall int64) (end int64) {
	acqRet := w.clock.Now()
	dw := w.watchDone(dctx.Done())
	h := Hold{Client: w.cfg.ID, Token: e.Rev(), AcqCall: acqCall, AcqRet: acqRet, LeaseFloor: acqCall, ReleaseCall: Never}
	floor := func() {
		if at := e.ExpiresAt(); !at.IsZero() {
			h.LeaseFloor = max(h.LeaseFloor, w.clock.At(at)-int64(lease.Margin(e.TTL())))
		}
	}
	floor()
	commit := func(ctx context.Context, op clientv3.Op) (*clientv3.TxnResponse, bool, error) {
		resp, err := e.Txn(ctx, op)
		switch {
		case errors.Is(err, election.ErrNotLeader):
			return nil, true, nil
		case err != nil:
			return nil, false, err
		}
		return resp, false, nil
	}
	var refused int
	h.Alive, refused = w.guardedWrites(context.WithoutCancel(ctx), h.Token, acqCall, dctx.Done(), commit, floor)
	ev := procEvent{Ev: "hold", Refused: refused}
	if refused > 0 {
		ev.DoneAfterRefusal = awaitDone(dctx.Done())
	}
	ev.Lost = errors.Is(e.Err(), election.ErrLost)
	// Run resigns after this returns; whether that succeeded is not
	// known here, so the hold counts as not released (ended by Never).
	h.ReleaseCall = w.clock.Now()
	ev.Hold, ev.DoneAt = &h, dw.stop()
	w.out.emit(ev)
	return h.ReleaseCall
}
