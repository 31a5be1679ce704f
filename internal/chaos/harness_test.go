package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/leasekit/leasekit/embedtest"
	"github.com/leasekit/leasekit/internal/etcderr"
)

// Timing of the suite. Faults outlast the TTLs, so that cut-off clients
// lose their leases; calls are bounded well below the time a round takes.
const (
	opTimeout       = 2 * time.Second // Get, Txn, Release, Resign
	acquireTimeout  = 5 * time.Second // Lock, Campaign
	progressTimeout = 30 * time.Second
	// grace is how long a call may run after its context ended before it
	// counts as stuck. The libraries clean up after a caller whose context
	// ended with bounded contexts of their own (etcderr.CleanupTimeout each,
	// at most two in a row), so a call can legitimately run that long.
	grace = 2*etcderr.CleanupTimeout + time.Second
)

// rounds returns how many fault rounds to run: LEASEKIT_CHAOS_ROUNDS, or
// short for the form that runs with every `go test`.
func rounds(t *testing.T, short int) int {
	v := os.Getenv("LEASEKIT_CHAOS_ROUNDS")
	if v == "" {
		return short
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		t.Fatalf("LEASEKIT_CHAOS_ROUNDS=%q: want a positive number", v)
	}
	return n
}

// seed returns LEASEKIT_CHAOS_SEED, or a new seed; it is logged so that a
// failing schedule can be replayed.
func seed(t *testing.T) int64 {
	s := time.Now().UnixNano()
	if v := os.Getenv("LEASEKIT_CHAOS_SEED"); v != "" {
		var err error
		if s, err = strconv.ParseInt(v, 10, 64); err != nil {
			t.Fatalf("LEASEKIT_CHAOS_SEED=%q: %v", v, err)
		}
	}
	t.Logf("seed %d (replay with LEASEKIT_CHAOS_SEED=%d)", s, s)
	return s
}

// suite is one run: a three-member cluster, clients that each reach it
// through proxies of their own, and what records and checks the run.
type suite struct {
	t       *testing.T
	c       *embedtest.Cluster
	admin   *clientv3.Client
	clock   *Clock
	rec     *Recorder
	wd      *Watchdog
	prog    *Progress
	rng     *rand.Rand
	proxies [][]*embedtest.Proxy
	clients []*clientv3.Client
	prefix  string // where the counter and the write records live

	mu       sync.Mutex
	finished bool // the test is over: do not report to t any more
	stop     context.CancelFunc
}

func newSuite(t *testing.T, clients int, prefix string) *suite {
	s := &suite{
		t:      t,
		c:      embedtest.New(t, embedtest.WithMembers(3)),
		clock:  NewClock(),
		rec:    NewRecorder(),
		prog:   NewProgress(clients),
		rng:    rand.New(rand.NewSource(seed(t))),
		prefix: prefix,
	}
	s.admin = s.c.Client()
	s.wd = &Watchdog{Grace: grace, Stuck: s.stuck}
	t.Cleanup(func() {
		s.mu.Lock()
		s.finished = true
		s.mu.Unlock()
	})
	for i := range clients {
		var eps []string
		var ps []*embedtest.Proxy
		for m := range s.c.Members() {
			p, err := s.c.NewProxy(m)
			if err != nil {
				t.Fatal(err)
			}
			ps = append(ps, p)
			eps = append(eps, p.Endpoint())
		}
		cli, err := s.c.NewClient(clientv3.Config{Endpoints: eps, DialTimeout: 2 * time.Second})
		if err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
		s.proxies = append(s.proxies, ps)
		s.clients = append(s.clients, cli)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := s.admin.Put(ctx, s.counterKey(), "0"); err != nil {
		t.Fatal(err)
	}
	return s
}

// stuck reports a call blocked past its context, with every stack, and
// ends the run.
func (s *suite) stuck(call, stacks string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.finished {
		return
	}
	s.t.Errorf("a %s call is still running %v after its context ended; goroutines:\n%s", call, grace, stacks)
	if s.stop != nil {
		s.stop()
	}
}

func (s *suite) counterKey() string { return s.prefix + "counter" }
func (s *suite) recordsKey() string { return s.prefix + "records/" }

// record is the value of a write record.
type record struct {
	Client int   `json:"c"`
	Token  int64 `json:"t"`
	Value  int64 `json:"v"`
}

// increment does one guarded read-modify-write of the counter: it reads the
// counter, then, if guard still holds and the counter has not moved, puts
// the counter plus one and a record of the write. tried is false if the
// read failed and nothing was attempted; call is when the write was sent.
func (s *suite) increment(ctx context.Context, client int, cli *clientv3.Client, guard clientv3.Cmp,
	token int64, key string) (a Attempt, call int64, tried bool) {
	a, call, tried, err := incrementCounter(ctx, s.wd, s.clock, cli, s.counterKey(), guardedBy(cli, guard),
		Attempt{Key: key, Client: client, Token: token})
	if err != nil {
		s.t.Errorf("%v", err)
	}
	if tried {
		s.rec.Attempt(a)
	}
	return a, call, tried
}

// worker is what a lock worker and an election candidate share: the index
// of its client and the client, a random source of its own, the tally of
// its outcomes and the sequence that names its write records.
type worker struct {
	s     *suite
	id    int
	cli   *clientv3.Client
	rng   *rand.Rand
	stats *tally
	seq   int
}

func newWorker(s *suite, i int, stats *tally) worker {
	return worker{s: s, id: i, cli: s.clients[i], stats: stats, rng: rand.New(rand.NewSource(s.rng.Int63()))}
}

// increment is suite.increment by this worker as the holder of token.
func (w *worker) increment(ctx context.Context, guard clientv3.Cmp, token int64) (a Attempt, call int64, tried bool) {
	w.seq++
	return w.s.increment(ctx, w.id, w.cli, guard, token, fmt.Sprintf("%s%d-%06d", w.s.recordsKey(), w.id, w.seq))
}

// writes does one to three guarded writes as the holder of h, up to the
// first that does not commit, and calls after, if set, after each. It
// moves h.Alive to the call of the last commit and reports whether a
// write committed.
func (w *worker) writes(ctx context.Context, guard clientv3.Cmp, h *Hold, after func()) bool {
	progressed := false
	for range 1 + w.rng.Intn(3) {
		a, call, tried := w.increment(ctx, guard, h.Token)
		if after != nil {
			after()
		}
		if !tried {
			w.stats.add("write: read failed")
			break
		}
		w.stats.add("write: " + a.Outcome.String())
		if a.Outcome != Committed {
			break
		}
		h.Alive = max(h.Alive, call)
		progressed = true
	}
	return progressed
}

// ended records the hold h, acquired at acqCall, and the worker's
// progress if a write committed in it; it returns progressed.
func (w *worker) ended(h Hold, acqCall int64, progressed bool) bool {
	w.s.rec.Hold(h)
	if progressed {
		w.s.prog.Record(w.id, acqCall)
	}
	return progressed
}

// progressed waits, for progressTimeout at most, until every client has
// made progress since the time since; it returns those that had not.
func (s *suite) progressed(ctx context.Context, since int64) ([]int, error) {
	ctx, cancel := context.WithTimeout(ctx, progressTimeout)
	defer cancel()
	return s.prog.Wait(ctx, since)
}

// repeat calls once until ctx ends, pausing after each call that made no
// progress, longer each time in a row.
func repeat(ctx context.Context, once func(ctx context.Context) bool) {
	b := etcderr.Backoff{Min: 20 * time.Millisecond, Max: 500 * time.Millisecond}
	for ctx.Err() == nil {
		if once(ctx) {
			b.Reset()
		} else if b.Wait(ctx) != nil {
			return
		}
	}
}

// commitFunc commits op only while a holder's guard holds; rejected
// reports that etcd (or the library, knowing the hold lost) refused it
// for that reason, and nothing was committed.
type commitFunc func(ctx context.Context, op clientv3.Op) (resp *clientv3.TxnResponse, rejected bool, err error)

// guardedBy commits through cli with guard as the transaction's condition.
func guardedBy(cli *clientv3.Client, guard clientv3.Cmp) commitFunc {
	return func(ctx context.Context, op clientv3.Op) (*clientv3.TxnResponse, bool, error) {
		resp, err := cli.Txn(ctx).If(guard).Then(op).Commit()
		if err != nil {
			return nil, false, err
		}
		return resp, !resp.Succeeded, nil
	}
}

// incrementCounter is increment for any guard: it reads the counter at
// counterKey through cli and commits, through commit, the counter plus
// one and a record of the write at a.Key if the counter has not moved.
// a names the attempt (Key, Client, Token); the rest is filled in. err
// reports a counter that is not a number.
func incrementCounter(ctx context.Context, wd *Watchdog, clock *Clock, cli *clientv3.Client, counterKey string,
	commit commitFunc, a Attempt) (_ Attempt, call int64, tried bool, err error) {
	var get *clientv3.GetResponse
	err = wd.Do(ctx, "Get", opTimeout, func(ctx context.Context) (err error) {
		get, err = cli.Get(ctx, counterKey)
		return err
	})
	if err != nil || len(get.Kvs) == 0 {
		return a, 0, false, nil
	}
	v, err := strconv.ParseInt(string(get.Kvs[0].Value), 10, 64)
	if err != nil {
		return a, 0, false, fmt.Errorf("counter %q: %w", get.Kvs[0].Value, err)
	}
	a.Value, a.ReadRev = v+1, get.Kvs[0].ModRevision
	rec, _ := json.Marshal(record{Client: a.Client, Token: a.Token, Value: a.Value})
	var (
		resp     *clientv3.TxnResponse
		rejected bool
	)
	call = clock.Now()
	err = wd.Do(ctx, "Txn", opTimeout, func(ctx context.Context) (err error) {
		resp, rejected, err = commit(ctx, clientv3.OpTxn(
			[]clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(counterKey), "=", a.ReadRev)},
			[]clientv3.Op{clientv3.OpPut(counterKey, strconv.FormatInt(a.Value, 10)), clientv3.OpPut(a.Key, string(rec))},
			[]clientv3.Op{clientv3.OpGet(counterKey)},
		))
		return err
	})
	switch {
	case err != nil:
		a.Outcome = Unknown
	case rejected:
		a.Outcome = Rejected
	case !resp.Responses[0].GetResponseTxn().Succeeded:
		a.Outcome = Conflict
		if kvs := resp.Responses[0].GetResponseTxn().Responses[0].GetResponseRange().Kvs; len(kvs) > 0 {
			a.ActualRev = kvs[0].ModRevision
		}
	default:
		a.Outcome = Committed
		a.Rev = resp.Header.Revision
	}
	return a, call, true, nil
}

// loop runs the workers and the fault rounds, then stops the workers.
// kinds picks the fault of each round.
func (s *suite) loop(nem *Nemesis, rounds int, kinds func(round int) Kind, workers []func(ctx context.Context)) {
	t := s.t
	ctx, cancel := context.WithCancel(context.Background())
	s.mu.Lock()
	s.stop = cancel
	s.mu.Unlock()
	defer cancel()
	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Go(func() { w(ctx) })
	}
	defer func() {
		cancel()
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(opTimeout + acquireTimeout + grace):
			t.Fatalf("workers did not stop; goroutines:\n%s", Stacks())
		}
	}()

	behind, err := s.progressed(ctx, 0)
	if err != nil {
		t.Errorf("clients %v made no progress before any fault", behind)
		return
	}
	var worst time.Duration
	for round := range rounds {
		kind := kinds(round)
		f, err := nem.Inject(ctx, round, kind)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			t.Errorf("%v", err)
			return
		}
		behind, err := s.progressed(ctx, f.Heal)
		took := time.Duration(s.clock.Now() - f.Heal)
		worst = max(worst, took)
		t.Logf("round %3d: %-16s on %-26s every client progressed %v after healing",
			round, kind, f.Target, took.Round(time.Millisecond))
		if err != nil {
			if ctx.Err() == nil {
				t.Errorf("round %d (%v on %s): clients %v made no progress within %v of healing; goroutines:\n%s",
					round, kind, f.Target, behind, progressTimeout, Stacks())
			}
			return
		}
	}
	t.Logf("slowest recovery: %v", worst.Round(time.Millisecond))
}

// schedule cycles through every kind of fault from offset, in order, and
// then picks faults at random.
func (s *suite) schedule(offset int) func(round int) Kind {
	return func(round int) Kind {
		if round < len(Kinds) {
			return Kinds[(round+offset)%len(Kinds)]
		}
		return Kinds[s.rng.Intn(len(Kinds))]
	}
}

// check reads back the writes and checks the run's history.
func (s *suite) check() {
	t := s.t
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	recs, err := s.admin.Get(ctx, s.recordsKey(), clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	var stored []Write
	for _, kv := range recs.Kvs {
		var r record
		if err := json.Unmarshal(kv.Value, &r); err != nil {
			t.Fatalf("record %s: %v", kv.Key, err)
		}
		stored = append(stored, Write{Key: string(kv.Key), Client: r.Client, Token: r.Token, Value: r.Value, Rev: kv.CreateRevision})
	}
	counter, err := s.admin.Get(ctx, s.counterKey())
	if err != nil {
		t.Fatal(err)
	}
	final, _ := strconv.ParseInt(string(counter.Kvs[0].Value), 10, 64)

	attempts := s.rec.Attempts()
	holds := s.rec.Holds()
	revokes := s.rec.Revokes()
	if err := CheckWrites(stored, attempts, final); err != nil {
		t.Errorf("writes: %v", err)
	}
	if err := CheckTokenOrder(holds, revokes); err != nil {
		t.Errorf("token order: %v", err)
	}
	start := time.Now()
	res, err := CheckMutex(holds, revokes, time.Minute)
	if err != nil {
		t.Errorf("mutex: %v", err)
	}

	n := Count(attempts)
	if recorded := s.rec.Faults(); len(recorded) > 0 {
		faults := map[Kind]int{}
		for _, f := range recorded {
			faults[f.Kind]++
		}
		var fs []string
		for _, k := range Kinds {
			fs = append(fs, fmt.Sprintf("%v=%d", k, faults[k]))
		}
		t.Logf("faults: %s; revocations %d", strings.Join(fs, " "), len(revokes))
	}
	t.Logf("holds %d; guarded writes: %d committed (counter %d), %d rejected by the guard, %d of unknown outcome "+
		"(%d of them applied), %d conflicts", len(holds), n[Committed], final, n[Rejected], n[Unknown],
		len(stored)-n[Committed], n[Conflict])
	t.Logf("history checked: writes in commit order, token order, porcupine mutex model (%v in %v)",
		res, time.Since(start).Round(time.Millisecond))
	if calls := s.wd.Summary(); calls != "" {
		t.Logf("calls:\n%s", calls)
	}
}

// classify names an error for the statistics.
func classify(err error) string {
	var ee rpctypes.EtcdError
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "deadline exceeded"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.As(err, &ee):
		return ee.Error()
	}
	s := err.Error()
	if i := strings.LastIndex(s, ": "); i >= 0 {
		s = s[i+2:]
	}
	return s
}

// tally counts events by name; it is safe for concurrent use.
type tally struct {
	mu sync.Mutex
	m  map[string]int
}

func (c *tally) add(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]int{}
	}
	c.m[name]++
}

func (c *tally) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	names := make([]string, 0, len(c.m))
	for k := range c.m {
		names = append(names, k)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, k := range names {
		fmt.Fprintf(&b, "  %6d %s\n", c.m[k], k)
	}
	return b.String()
}

// empty accepts no keys, for testkit.WaitKeys: keys of lost leases go
// when etcd expires them.
func empty(keys []string) bool { return len(keys) == 0 }
