//go:build linux

package chaos

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/leasekit/leasekit/election"
	"github.com/leasekit/leasekit/etcdlock"
)

// Timing of the process-level fault test.
const (
	procTTL = 2 * time.Second
	// stopTimeout bounds how long the kernel may take to stop every
	// thread of a worker after SIGSTOP.
	stopTimeout = 5 * time.Second
	// takeoverTimeout bounds the wait, after a holder is paused, for
	// another worker to commit under a newer token: the paused lease must
	// expire first.
	takeoverTimeout = 4*procTTL + 10*time.Second
	// exitTimeout bounds the wait for a worker to exit after SIGTERM: it
	// finishes its hold, releases and closes.
	exitTimeout = acquireTimeout + 4*opTimeout + refusalBound + grace
	// maxMisses bounds how often in a row a SIGSTOP may miss the holder
	// (it released in between) before the round gives up.
	maxMisses = 50
)

// TestLockUnderPauses runs lock holders as separate processes and, in
// each round, stops the current holder with SIGSTOP until its lease has
// expired and another worker has committed a guarded write under a newer
// token, then resumes it. Every worker does guarded read-modify-writes of
// a counter (Txn(If(lk.Guard()), Then(Txn(If(counter unchanged), ...))))
// whatever its Done says, so only the guard can stop a paused holder that
// missed its loss. Checked: no lost update and tokens increasing in commit
// order (CheckWrites), the holds as a mutex (CheckMutex, CheckTokenOrder),
// no write of the paused hold commits after its resume, the resumed
// holder finds out (its writes refused, Done closed, Release returns
// ErrNotHeld), every worker commits again after each resume, and on
// SIGTERM every worker exits 0 with no lock key left.
func TestLockUnderPauses(t *testing.T) {
	workers := procWorkers()
	s := newProcSuite(t, "/chaos/proc-lock/")
	admin, err := etcdlock.New(s.admin)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	r := &procRun{s: s, kind: "lock", keys: etcdlock.DefaultPrefix,
		holder: func(ctx context.Context) (int, int64, bool, error) {
			h, id, ok, err := lockHolder(ctx, admin, procLockName)
			return id, h.Token, ok, err
		}}
	r.run(workers, rounds(t, 3), func(cfg *procConfig) { cfg.AutoRefresh = cfg.ID%2 == 0 })
}

// TestElectionUnderPauses is TestLockUnderPauses for an election: the
// workers are candidates whose OnStartedLeading duties write with
// Election.Txn, and each round stops the leader until another candidate
// leads and has committed, then resumes it. The resumed leader's writes
// must be refused and its duties' context must end.
func TestElectionUnderPauses(t *testing.T) {
	workers := procWorkers()
	s := newProcSuite(t, "/chaos/proc-election/")
	admin, err := election.New(s.admin, procElection)
	if err != nil {
		t.Fatal(err)
	}
	r := &procRun{s: s, kind: "election", keys: election.DefaultPrefix,
		holder: func(ctx context.Context) (int, int64, bool, error) {
			l, err := admin.Leader(ctx)
			if errors.Is(err, election.ErrNoLeader) {
				return 0, 0, false, nil
			}
			if err != nil {
				return 0, 0, false, err
			}
			id, err := strconv.Atoi(l.Value)
			if err != nil {
				return 0, 0, false, fmt.Errorf("leader %d has value %q: %w", l.Rev, l.Value, err)
			}
			return id, l.Rev, true, nil
		}}
	r.run(workers, rounds(t, 2), nil)
}

// procWorkers returns how many worker processes to run: 3 in the short
// form, 5 in the long one.
func procWorkers() int {
	if os.Getenv("LEASEKIT_CHAOS_ROUNDS") != "" {
		return 5
	}
	return 3
}

// newProcSuite starts a three-member cluster with no in-process clients
// and a clock that worker processes can share.
func newProcSuite(t *testing.T, prefix string) *suite {
	s := newSuite(t, 0, prefix)
	// Without a monotonic reading, the clock reads the wall clock, which
	// every process on the machine shares.
	s.clock = &Clock{start: time.Unix(0, time.Now().UnixNano())}
	return s
}

// procRun is one run of worker processes and what they reported.
type procRun struct {
	s      *suite
	kind   string // procConfig.Kind
	keys   string // the prefix of the lock's or election's keys
	holder func(ctx context.Context) (id int, token int64, ok bool, err error)
	ws     []*proc

	mu      sync.Mutex
	changed chan struct{} // closed and replaced on every event
	commits []procEvent   // committed writes, as reported
	writes  map[int][]procEvent
	holds   map[[2]int64]procEvent // by client and token
	bad     []string               // lines that were not events, stuck calls
	exits   map[int]string         // exit events' summaries

	// figures
	pauses, misses, inRelease, beforeHold int
	refusedAfter, refusedKnown            int
	foundBefore                           int
	worstTakeover, worstDone, worstGo     time.Duration
}

// proc is one worker process.
type proc struct {
	id     int
	cmd    *exec.Cmd
	stderr lockedBuffer
	exited chan struct{} // closed once it exited and its output is read
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// start runs worker id as a process.
func (r *procRun) start(cfg procConfig) (*proc, error) {
	t := r.s.t
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	p := &proc{id: cfg.ID, exited: make(chan struct{})}
	p.cmd = exec.Command(exe)
	p.cmd.Env = append(os.Environ(), workerEnv+"="+string(b))
	p.cmd.Stderr = &p.stderr
	// A worker dies with the test process, even one killed outright.
	// (The signal follows the thread that started the worker, and Go
	// ends no thread unless a goroutine locked to it exits.)
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	t.Cleanup(func() {
		select {
		case <-p.exited:
			return
		default:
		}
		_ = p.cmd.Process.Kill()
		<-p.exited
	})
	go func() {
		defer close(p.exited)
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 4<<20)
		for sc.Scan() {
			r.event(p.id, sc.Bytes())
		}
		_ = p.cmd.Wait()
	}()
	return p, nil
}

// event takes in one line of worker id's report.
func (r *procRun) event(id int, line []byte) {
	var ev procEvent
	err := json.Unmarshal(line, &ev)
	r.mu.Lock()
	defer r.mu.Unlock()
	defer func() {
		close(r.changed)
		r.changed = make(chan struct{})
	}()
	if err != nil {
		r.bad = append(r.bad, fmt.Sprintf("worker %d wrote %q: %v", id, line, err))
		return
	}
	switch ev.Ev {
	case "ready":
	case "write":
		if ev.Attempt == nil || ev.Attempt.Client != id {
			r.bad = append(r.bad, fmt.Sprintf("worker %d wrote %q", id, line))
			return
		}
		r.s.rec.Attempt(*ev.Attempt)
		r.writes[id] = append(r.writes[id], ev)
		if ev.Attempt.Outcome == Committed {
			r.commits = append(r.commits, ev)
			r.s.prog.Record(id, ev.Call)
		}
	case "hold":
		if ev.Hold == nil || ev.Hold.Client != id {
			r.bad = append(r.bad, fmt.Sprintf("worker %d wrote %q", id, line))
			return
		}
		r.s.rec.Hold(*ev.Hold)
		r.holds[[2]int64{int64(id), ev.Hold.Token}] = ev
	case "stuck":
		r.bad = append(r.bad, fmt.Sprintf("worker %d: a %s call outlived its context by %v", id, ev.Detail, grace))
	case "exit":
		r.exits[id] = ev.Detail
	default:
		r.bad = append(r.bad, fmt.Sprintf("worker %d wrote %q", id, line))
	}
}

// waitFor waits until cond, called with r.mu held, is true.
func (r *procRun) waitFor(ctx context.Context, cond func() bool) error {
	for {
		r.mu.Lock()
		ok, ch := cond(), r.changed
		r.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// waitStopped waits until every thread of process pid has stopped: until
// waitid reports it stopped, leaving the report for others (WNOWAIT).
func waitStopped(ctx context.Context, pid int) error {
	res := make(chan error, 1)
	go func() {
		var info [128]byte // siginfo_t
		for {
			_, _, e := syscall.Syscall6(syscall.SYS_WAITID, 1 /* P_PID */, uintptr(pid),
				uintptr(unsafe.Pointer(&info)), syscall.WSTOPPED|syscall.WNOWAIT, 0, 0)
			if e == syscall.EINTR {
				continue
			}
			if e != 0 {
				res <- e
			} else {
				res <- nil
			}
			return
		}
	}()
	select {
	case err := <-res:
		return err
	case <-ctx.Done():
		return fmt.Errorf("process %d not stopped: %w", pid, ctx.Err())
	}
}

func (p *proc) pause(ctx context.Context) error {
	if err := p.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		return err
	}
	sctx, cancel := context.WithTimeout(ctx, stopTimeout)
	defer cancel()
	return waitStopped(sctx, p.cmd.Process.Pid)
}

func (p *proc) resume() error { return p.cmd.Process.Signal(syscall.SIGCONT) }

// run starts workers, runs the pause rounds, stops the workers with
// SIGTERM and checks the history. tune adjusts each worker's config.
func (r *procRun) run(workers, rounds int, tune func(*procConfig)) {
	t, s := r.s.t, r.s
	r.changed = make(chan struct{})
	r.writes, r.holds, r.exits = map[int][]procEvent{}, map[[2]int64]procEvent{}, map[int]string{}
	s.prog = NewProgress(workers)
	started := time.Now()
	for id := range workers {
		cfg := procConfig{Kind: r.kind, ID: id, Endpoints: s.c.Endpoints(), Prefix: s.prefix,
			Base: s.clock.start.UnixNano(), Seed: s.rng.Int63(), TTL: procTTL}
		if tune != nil {
			tune(&cfg)
		}
		p, err := r.start(cfg)
		if err != nil {
			t.Fatalf("worker %d: %v", id, err)
		}
		r.ws = append(r.ws, p)
	}

	ctx := context.Background()
	behind, err := s.progressed(ctx, 0)
	if err != nil {
		r.fail("workers %v made no progress before any pause", behind)
		return
	}
	// After a failed round, the workers still stop and the history is
	// still checked: both say more about what went wrong.
	for round := range rounds {
		if !r.round(ctx, round) {
			break
		}
	}
	r.stopAll(ctx)
	r.report(time.Since(started))
}

// fail reports a failure with every worker's stderr.
func (r *procRun) fail(format string, args ...any) {
	t := r.s.t
	t.Helper()
	t.Errorf(format, args...)
	for _, p := range r.ws {
		if e := p.stderr.String(); e != "" {
			t.Logf("worker %d stderr:\n%s", p.id, e)
		}
	}
}

// round pauses the holder past its TTL until another worker commits,
// resumes it, and checks what it did then. It reports whether the run
// can go on.
func (r *procRun) round(ctx context.Context, round int) bool {
	s := r.s
	var (
		p      *proc
		token  int64
		stopAt int64
	)
	for misses := 0; ; misses++ {
		if misses == maxMisses {
			r.fail("round %d: %d SIGSTOPs in a row missed the holder", round, misses)
			return false
		}
		// Pick the holder after the next commit, which a holder made.
		n := r.commitCount()
		wctx, cancel := context.WithTimeout(ctx, progressTimeout)
		err := r.waitFor(wctx, func() bool { return len(r.commits) > n })
		cancel()
		if err != nil {
			r.fail("round %d: no write committed within %v", round, progressTimeout)
			return false
		}
		id, tok, ok, err := r.holderNow(ctx)
		if err != nil {
			r.fail("round %d: %v", round, err)
			return false
		}
		if !ok {
			continue
		}
		p = r.ws[id]
		stopAt = s.clock.Now()
		if err := p.pause(ctx); err != nil {
			r.fail("round %d: pause worker %d: %v", round, id, err)
			return false
		}
		// Stopped, the worker cannot change what it holds; only its
		// lease's expiry can.
		id2, tok2, ok2, err := r.holderNow(ctx)
		if err != nil {
			r.fail("round %d: %v", round, err)
			return false
		}
		if ok2 && id2 == id && tok2 == tok {
			token = tok
			break
		}
		if err := p.resume(); err != nil {
			r.fail("round %d: resume worker %d: %v", round, id, err)
			return false
		}
		r.mu.Lock()
		r.misses++
		r.mu.Unlock()
	}

	// The pause lasts until another worker has committed under a newer
	// token, and at least a TTL and a random part of another.
	minPause := procTTL + time.Duration(s.rng.Int63n(int64(procTTL/2)))
	tctx, cancel := context.WithTimeout(ctx, takeoverTimeout)
	var takeover procEvent
	err := r.waitFor(tctx, func() bool {
		for _, c := range r.commits {
			if c.Attempt.Client != p.id && c.Attempt.Token > token {
				takeover = c
				return true
			}
		}
		return false
	})
	cancel()
	if err != nil {
		_ = p.resume()
		r.fail("round %d: worker %d paused holding %d, and nobody committed within %v", round, p.id, token, takeoverTimeout)
		return false
	}
	tookOver := time.Duration(takeover.Call - stopAt)
	if rest := minPause - time.Duration(s.clock.Now()-stopAt); rest > 0 {
		// The fault itself: the pause goes on for its chosen length.
		time.Sleep(rest)
	}
	contAt := s.clock.Now()
	if err := p.resume(); err != nil {
		r.fail("round %d: resume worker %d: %v", round, p.id, err)
		return false
	}

	// The paused hold must end, and the resumed holder find out. A
	// worker paused between winning in etcd and its Lock (or Run)
	// returning never has that hold: it moves on to a newer token.
	ectx, cancel := context.WithTimeout(ctx, progressTimeout)
	var end *procEvent
	key := [2]int64{int64(p.id), token}
	err = r.waitFor(ectx, func() bool {
		if ev, ok := r.holds[key]; ok {
			end = &ev
			return true
		}
		for _, c := range r.commits {
			if c.Attempt.Client == p.id && c.Attempt.Token > token {
				return true
			}
		}
		return false
	})
	cancel()
	if err != nil {
		r.fail("round %d: worker %d, resumed %v ago, has neither reported the end of its hold %d nor committed since",
			round, p.id, progressTimeout, token)
		return false
	}
	if !r.checkResumed(round, p.id, token, stopAt, contAt, takeover, end) {
		return false
	}

	// Every worker, the resumed one too, commits again.
	behind, err := s.progressed(ctx, contAt)
	if err != nil {
		r.fail("round %d: workers %v committed nothing within %v of the resume", round, behind, progressTimeout)
		return false
	}
	progressed := time.Duration(s.clock.Now() - contAt)
	r.mu.Lock()
	r.pauses++
	r.worstTakeover = max(r.worstTakeover, tookOver)
	r.worstGo = max(r.worstGo, progressed)
	r.mu.Unlock()
	s.t.Logf("round %3d: worker %d paused holding %d for %v; worker %d committed under %d after %v; "+
		"every worker committed %v after the resume",
		round, p.id, token, time.Duration(contAt-stopAt).Round(time.Millisecond), takeover.Attempt.Client,
		takeover.Attempt.Token, tookOver.Round(time.Millisecond), progressed.Round(time.Millisecond))
	return true
}

func (r *procRun) commitCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.commits)
}

func (r *procRun) holderNow(ctx context.Context) (int, int64, bool, error) {
	hctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	id, tok, ok, err := r.holder(hctx)
	if err == nil && ok && (id < 0 || id >= len(r.ws)) {
		err = fmt.Errorf("holder names worker %d", id)
	}
	return id, tok, ok, err
}

// checkResumed checks what the holder paused with token did after its
// resume at contAt: no write of it committed after the takeover, every
// write it sent after the resume was refused and Done closed, and Release
// did not report a release of a hold that was gone. end is the hold's
// report, nil if the worker never had the hold. It reports whether the
// run can go on.
func (r *procRun) checkResumed(round, id int, token, stopAt, contAt int64, takeover procEvent, end *procEvent) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	ok := true
	failf := func(format string, args ...any) {
		r.mu.Unlock()
		r.fail("round %d: worker %d, paused holding %d: "+format, append([]any{round, id, token}, args...)...)
		r.mu.Lock()
		ok = false
	}
	after := 0
	for _, w := range r.writes[id] {
		a := w.Attempt
		if a.Token != token {
			continue
		}
		if a.Outcome == Committed && a.Rev > takeover.Attempt.Rev {
			failf("its write %s committed at rev %d, after worker %d's under token %d at rev %d",
				a.Key, a.Rev, takeover.Attempt.Client, takeover.Attempt.Token, takeover.Attempt.Rev)
		}
		if w.Call < contAt {
			continue
		}
		after++
		switch a.Outcome {
		case Committed, Conflict:
			failf("its write %s, sent after the resume, was %v", a.Key, a.Outcome)
		case Rejected:
			r.refusedAfter++
			if w.DoneBefore {
				r.refusedKnown++
			}
		}
	}
	if end == nil {
		r.beforeHold++
		return ok
	}
	h := end.Hold
	if end.Refused > 0 && !end.DoneAfterRefusal {
		failf("a write was refused for its guard, but Done was still open %v later", refusalBound)
	}
	if end.DoneAt < h.ReleaseCall {
		r.foundBefore++
		r.worstDone = max(r.worstDone, time.Duration(end.DoneAt-contAt))
	}
	switch {
	case h.ReleaseCall < stopAt:
		// Paused while giving the hold up: its release was on its way.
		r.inRelease++
	case r.kind == "lock" && !end.NotHeld:
		failf("Release after the resume returned %q, not ErrNotHeld (writes after the resume: %d, Done closed first: %v)",
			end.ReleaseErr, after, end.DoneAt < h.ReleaseCall)
	case r.kind == "election" && after > 0 && !end.Lost:
		failf("its duties returned with Err() not wrapping ErrLost after %d refused writes", after)
	}
	return ok
}

// stopAll stops every worker with SIGTERM and checks that each exits 0
// and that no key is left of the lock or the election.
func (r *procRun) stopAll(ctx context.Context) {
	s := r.s
	for _, p := range r.ws {
		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			r.fail("SIGTERM worker %d: %v", p.id, err)
		}
	}
	deadline := time.NewTimer(exitTimeout)
	defer deadline.Stop()
	for _, p := range r.ws {
		select {
		case <-p.exited:
		case <-deadline.C:
			// SIGQUIT makes a Go process print every goroutine's stack.
			_ = p.cmd.Process.Signal(syscall.SIGQUIT)
			select {
			case <-p.exited:
			case <-time.After(stopTimeout):
			}
			r.fail("worker %d still ran %v after SIGTERM", p.id, exitTimeout)
			return
		}
		r.mu.Lock()
		_, said := r.exits[p.id]
		r.mu.Unlock()
		if st := p.cmd.ProcessState; !st.Success() || !said {
			r.fail("worker %d exited with %v (exit reported: %v) after SIGTERM", p.id, st, said)
		}
		if e := p.stderr.String(); strings.Contains(e, "DATA RACE") {
			r.fail("worker %d saw a data race:\n%s", p.id, e)
		}
	}
	gctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	resp, err := s.admin.Get(gctx, r.keys, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		r.fail("read keys: %v", err)
		return
	}
	for _, kv := range resp.Kvs {
		r.fail("key %s left behind after every worker exited", kv.Key)
	}
}

// report checks the history and logs the run's figures.
func (r *procRun) report(took time.Duration) {
	t, s := r.s.t, r.s
	r.mu.Lock()
	for _, b := range r.bad {
		t.Errorf("%s", b)
	}
	t.Logf("%s: %d workers, %d holder pauses (%d SIGSTOPs missed the holder and were undone at once; "+
		"%d landed in a release, %d before Lock or Run saw the win); after resuming, %d writes were refused by the guard (%d with Done already closed); "+
		"%d resumed holders saw Done close before giving up, at most %v after the resume; slowest takeover %v after "+
		"the SIGSTOP; slowest progress of every worker %v after a resume; %v in all",
		r.kind, len(r.ws), r.pauses, r.misses, r.inRelease, r.beforeHold, r.refusedAfter, r.refusedKnown, r.foundBefore,
		r.worstDone.Round(time.Millisecond), r.worstTakeover.Round(time.Millisecond), r.worstGo.Round(time.Millisecond),
		took.Round(time.Millisecond))
	exits := r.exits
	r.mu.Unlock()
	for id := range len(r.ws) {
		if d, ok := exits[id]; ok {
			t.Logf("worker %d:\n%s", id, d)
		}
	}
	s.check()
}
