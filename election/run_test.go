package election_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime/pprof"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/leasekit/leasekit/election"
	"github.com/leasekit/leasekit/embedtest"
	"github.com/leasekit/leasekit/internal/testkit"
)

// rotation runs candidates that each lead for a few guarded writes and
// then return, so that leadership rotates, until terms terms were led.
// Between rounds it calls fault (if set) with the number of terms so far.
type rotation struct {
	t          *testing.T
	c          *embedtest.Cluster
	name       string
	candidates int
	terms      int
	writes     int
	opts       []election.Option
	// clients, if set, makes the client of candidate i.
	clients func(i int) *clientv3.Client
	// fault, if set, runs once after each listed number of terms.
	faults map[int]func()
	// timeout, if set, bounds the whole rotation instead of testkit.Timeout.
	timeout time.Duration
	// fifo makes each leader wait, before it returns, until all the other
	// candidates are in line, so that the order of terms is FIFO's alone
	// rather than also how fast each candidate re-joins.
	fifo bool
}

func (r rotation) run() *duties {
	t := r.t
	ctx := testkit.Context(t)
	if r.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(context.Background(), r.timeout)
		defer cancel()
	}
	d := newDuties(t)
	rctx, stop := context.WithCancel(ctx)
	defer stop()
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		led      int
		seen     = make([][]election.Leader, r.candidates)
		progress = make(chan int, 1024)
	)
	for i := range r.candidates {
		cli := c(r, i)
		e, err := election.New(cli, r.name, append(r.opts, election.WithValue(fmt.Sprint(i)))...)
		require.NoError(t, err)
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := e.Run(rctx, election.Callbacks{
				OnStartedLeading: func(ctx context.Context) {
					k := d.begin(i, e.Rev())
					defer d.end(k)
					for w := range r.writes {
						if !write(ctx, t, e, i, "/rotation/"+r.name, fmt.Sprintf("%d-%d", i, w)) {
							return
						}
					}
					if r.fifo {
						prefix := election.DefaultPrefix + r.name + "/"
						_, err := testkit.WaitKeys(ctx, r.c.Client(), prefix, func(keys []string) bool { return len(keys) >= r.candidates })
						if ctx.Err() == nil {
							assert.NoError(t, err, "candidate %d", i)
						}
					}
					mu.Lock()
					led++
					n := led
					mu.Unlock()
					progress <- n
					if n >= r.terms {
						<-ctx.Done()
					}
				},
				OnStoppedLeading: func() { d.stop(i) },
				OnNewLeader: func(l election.Leader) {
					mu.Lock()
					seen[i] = append(seen[i], l)
					mu.Unlock()
				},
			})
			assert.NoError(t, err, "candidate %d: Run", i)
		}()
	}
	for n := 0; n < r.terms; {
		select {
		case n = <-progress:
		case <-ctx.Done():
			// Show where the candidates are stuck.
			var buf strings.Builder
			pprof.Lookup("goroutine").WriteTo(&buf, 1)
			for _, g := range strings.Split(buf.String(), "\n\n") {
				if strings.Contains(g, "leasekit") {
					t.Log(g)
				}
			}
			require.FailNowf(t, "the rotation stalled", "%d of %d terms: %v", n, r.terms, ctx.Err())
		}
		if f := r.faults[n]; f != nil {
			f()
			delete(r.faults, n)
		}
	}
	stop()
	wg.Wait()
	d.check()
	for i, ls := range seen {
		require.NotEmpty(t, ls, "candidate %d was told of no leader", i)
		for j := 1; j < len(ls); j++ {
			if ls[j].Rev != 0 && ls[j-1].Rev != 0 {
				assert.GreaterOrEqual(t, ls[j].Rev, ls[j-1].Rev, "candidate %d was told of term %d after term %d", i, ls[j].Rev, ls[j-1].Rev)
			}
		}
	}
	return d
}

// write puts key = value as candidate i's guarded write. It retries what
// a fault can leave ambiguous (a member killed mid-call) and reports
// whether the term went on: only a lost term may refuse the write.
func write(ctx context.Context, t *testing.T, e *election.Election, i int, key, value string) bool {
	var err error
	for range 100 {
		if _, err = e.Txn(ctx, clientv3.OpPut(key, value)); err == nil {
			return true
		}
		if errors.Is(err, election.ErrNotLeader) || ctx.Err() != nil {
			return false
		}
		// Not a wait for a condition: a pause before retrying a call
		// whose member went away.
		select {
		case <-ctx.Done():
			return false
		case <-time.After(20 * time.Millisecond):
		}
	}
	assert.Failf(t, "a write failed", "candidate %d: write in term %d: %v", i, e.Rev(), err)
	return false
}

func c(r rotation, i int) *clientv3.Client {
	if r.clients != nil {
		return r.clients(i)
	}
	cli, err := r.c.NewClient()
	require.NoError(r.t, err)
	return cli
}

// Leadership rotates FIFO among Run loops, terms increase, and no two
// candidates ever run their duties at once.
func TestRunRotatesWithoutOverlap(t *testing.T) {
	cl := embedtest.New(t)
	d := rotation{t: t, c: cl, name: "rotate", candidates: 3, terms: 12, writes: 3, fifo: true}.run()
	log := d.terms()
	require.GreaterOrEqual(t, len(log), 12)
	// Every leader re-joins behind the others: from the first term on
	// which all three were in line, any three consecutive terms belong to
	// three different candidates.
	for i := 1; i+2 < len(log); i++ {
		w := map[int]bool{log[i].who: true, log[i+1].who: true, log[i+2].who: true}
		require.Len(t, w, 3, "terms %d..%d: not FIFO: %v", i, i+2, log[i:i+3])
	}
}

// A leader whose key is deleted has its duties cancelled, stops leading,
// and campaigns again.
func TestRunRecampaignsAfterLoss(t *testing.T) {
	c := embedtest.New(t)
	ctx := testkit.Context(t)
	admin := c.Client()
	e := candidate(t, c, "loss", election.WithValue("me"))
	d := newDuties(t)
	terms := make(chan int64, 10)
	rctx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 1)
	go func() {
		done <- e.Run(rctx, election.Callbacks{
			OnStartedLeading: func(ctx context.Context) {
				k := d.begin(0, e.Rev())
				defer d.end(k)
				terms <- e.Rev()
				<-ctx.Done()
				if rctx.Err() != nil {
					return // stopped, not lost
				}
				// Writes after the loss fail.
				_, err := e.Txn(context.Background(), clientv3.OpPut("/x", "y"))
				assert.Error(t, err, "a write after the loss succeeded")
			},
			OnStoppedLeading: func() { d.stop(0) },
		})
	}()
	first := testkit.Recv(t, terms)
	key := e.EtcdKey()
	_, err := admin.Delete(ctx, key)
	require.NoError(t, err)
	second := testkit.Recv(t, terms)
	require.Greater(t, second, first)

	// Losing the lease works the same way.
	_, err = admin.Revoke(ctx, clientv3.LeaseID(leaseOf(t, admin, e.EtcdKey())))
	require.NoError(t, err)
	third := testkit.Recv(t, terms)
	require.Greater(t, third, second)

	stop()
	require.NoError(t, testkit.Recv(t, done))
	d.check()
	_, err = e.Leader(ctx)
	require.ErrorIs(t, err, election.ErrNoLeader, "Run resigned when ctx ended")
}

// Resign during Run stops the duties before the next candidate leads,
// and Run campaigns again.
func TestResignDuringRun(t *testing.T) {
	c := embedtest.New(t)
	ctx := testkit.Context(t)
	d := newDuties(t)
	rctx, stop := context.WithCancel(ctx)
	defer stop()
	started := make(chan int, 10)
	var wg sync.WaitGroup
	es := make([]*election.Election, 2)
	for i := range es {
		es[i] = candidate(t, c, "resign-run", election.WithValue(fmt.Sprint(i)))
		wg.Add(1)
		go func() {
			defer wg.Done()
			es[i].Run(rctx, election.Callbacks{
				OnStartedLeading: func(ctx context.Context) {
					k := d.begin(i, es[i].Rev())
					defer d.end(k)
					started <- i
					<-ctx.Done()
				},
				OnStoppedLeading: func() { d.stop(i) },
			})
		}()
	}
	first := testkit.Recv(t, started)
	waitQueued(t, c.Client(), "resign-run", 2)
	require.NoError(t, es[first].Resign(ctx))
	second := testkit.Recv(t, started)
	require.NotEqual(t, first, second)
	waitQueued(t, c.Client(), "resign-run", 2)
	require.NoError(t, es[second].Resign(ctx))
	require.Equal(t, first, testkit.Recv(t, started))
	stop()
	wg.Wait()
	d.check()
}

func TestHealthHandler(t *testing.T) {
	c := embedtest.New(t)
	ctx := testkit.Context(t)
	e := candidate(t, c, "health")
	h := e.HealthHandler()
	get := func() int {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
		return rec.Code
	}
	require.Equal(t, http.StatusOK, get(), "a candidate that does not lead is healthy")
	require.NoError(t, e.Campaign(ctx, "v"))
	require.NoError(t, e.Healthy())
	require.Equal(t, http.StatusOK, get())
}

// Run says why each term ended, both as the cause of the duties' ctx and
// to OnStoppedLeadingCause. (A lease lost to its deadline on a cut
// network: TestLeaderCutOff.)
func TestRunStopCauses(t *testing.T) {
	c := embedtest.New(t)
	admin := c.Client()
	errMine := errors.New("shutting down")
	for _, tc := range []struct {
		name string
		// returns makes the duties return at once instead of waiting
		// for their ctx.
		returns bool
		// end ends the term that e leads; stop ends Run's ctx.
		end  func(t *testing.T, e *election.Election, stop context.CancelCauseFunc)
		want []error
	}{
		{"duties return", true, nil, []error{election.ErrDutiesReturned}},
		{"resign", false, func(t *testing.T, e *election.Election, _ context.CancelCauseFunc) {
			require.NoError(t, e.Resign(testkit.Context(t)))
		}, []error{election.ErrResigned}},
		{"key deleted", false, func(t *testing.T, e *election.Election, _ context.CancelCauseFunc) {
			_, err := admin.Delete(testkit.Context(t), e.EtcdKey())
			require.NoError(t, err)
		}, []error{election.ErrLost}},
		{"lease revoked", false, func(t *testing.T, e *election.Election, _ context.CancelCauseFunc) {
			_, err := admin.Revoke(testkit.Context(t), clientv3.LeaseID(leaseOf(t, admin, e.EtcdKey())))
			require.NoError(t, err)
		}, []error{election.ErrLost}},
		{"Run's ctx ended", false, func(t *testing.T, _ *election.Election, stop context.CancelCauseFunc) {
			stop(errMine)
		}, []error{election.ErrStopped, errMine}},
		// Run's ctx has a deadline (deadline below), which the duties'
		// ctx has too.
		{"Run's deadline passed", false, nil, []error{election.ErrStopped, context.DeadlineExceeded}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := candidate(t, c, "cause-"+tc.name)
			parent := testkit.Context(t)
			if tc.end == nil && !tc.returns {
				var cancel context.CancelFunc
				parent, cancel = context.WithTimeout(parent, 2*time.Second)
				defer cancel()
			}
			rctx, stop := context.WithCancelCause(parent)
			defer stop(nil)
			started := make(chan struct{}, 1)
			inDuties := make(chan error, 1)
			stopped := make(chan error, 10)
			done := make(chan error, 1)
			go func() {
				done <- e.Run(rctx, election.Callbacks{
					OnStartedLeading: func(ctx context.Context) {
						select {
						case started <- struct{}{}:
						default: // a later term
						}
						if tc.returns {
							return
						}
						d1, ok1 := ctx.Deadline()
						d2, ok2 := rctx.Deadline()
						assert.Equal(t, ok2, ok1, "the duties' ctx has a deadline as Run's has")
						assert.Equal(t, d2, d1, "the duties' deadline is Run's")
						<-ctx.Done()
						select {
						case inDuties <- context.Cause(ctx):
						default:
						}
					},
					OnStoppedLeadingCause: func(cause error) { stopped <- cause },
				})
			}()
			testkit.Recv(t, started)
			if tc.end != nil {
				tc.end(t, e, stop)
			}
			cause := testkit.Recv(t, stopped)
			for _, want := range tc.want {
				require.ErrorIs(t, cause, want)
			}
			if !tc.returns {
				require.Equal(t, cause, testkit.Recv(t, inDuties), "the duties' ctx has the same cause")
			}
			stop(nil)
			require.NoError(t, testkit.Recv(t, done))
		})
	}
}
