package chaos

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"strconv"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/leasekit/leasekit/election"
	"github.com/leasekit/leasekit/internal/etcderr"
	"github.com/leasekit/leasekit/internal/testkit"
)

// electionName is the election every candidate runs in.
const electionName = "chaos"

// TestElectionUnderFaults runs candidates that campaign, do guarded
// read-modify-writes of a counter while they lead, and resign, under the
// nemesis of TestLockUnderFaults. Terms are the fencing tokens: they must
// increase in commit order, leadership intervals must not overlap, and
// every candidate must lead again after every fault.
func TestElectionUnderFaults(t *testing.T) {
	const candidates = 3
	s := newSuite(t, candidates, "/chaos/election/")
	var stats tally
	var run []func(context.Context)
	for i := range candidates {
		ttl := time.Second
		if i%2 == 1 {
			ttl = 2 * time.Second
		}
		run = append(run, newCandidate(s, i, ttl, &stats).run)
	}
	s.loop(electionNemesis(s, false), rounds(t, 4), s.schedule(0), run)
	s.checkElection()
	t.Logf("candidate outcomes:\n%s", stats.String())
}

// TestElectionRunUnderFaults runs candidates that lead with Run, under the
// nemesis of TestElectionUnderFaults, except that a cut always hits the
// leader. Each term's duties do guarded read-modify-writes of a counter
// until they have done a few or their ctx ends. On top of the checks of
// TestElectionUnderFaults, Run's duties must end before any later term
// began (CheckDuties): Run cancels them when leadership is lost, before
// etcd can let the next candidate in.
func TestElectionRunUnderFaults(t *testing.T) {
	const candidates = 3
	s := newSuite(t, candidates, "/chaos/election-run/")
	var stats tally
	var run []func(context.Context)
	for i := range candidates {
		// Run's duties must return within the lease's margin: a tenth of
		// the TTL.
		run = append(run, newCandidate(s, i, 2*time.Second, &stats).lead)
	}
	s.loop(electionNemesis(s, true), rounds(t, 4), s.schedule(0), run)
	s.checkElection()
	duties := s.rec.Duties()
	if err := CheckDuties(duties, s.rec.Holds(), s.rec.Revokes()); err != nil {
		t.Errorf("Run's duties: %v", err)
	} else {
		t.Logf("Run's duties of %d terms ended before every later term began", len(duties))
	}
	t.Logf("candidate outcomes:\n%s", stats.String())
}

// newCandidate makes candidate i of s. Its value, "candidate-<i>", is how
// the nemesis tells who leads.
func newCandidate(s *suite, i int, ttl time.Duration, stats *tally) *candidate {
	e, err := election.New(s.clients[i], electionName, election.WithTTL(ttl),
		election.WithValue(fmt.Sprintf("candidate-%d", i)))
	if err != nil {
		s.t.Fatal(err)
	}
	return &candidate{worker: newWorker(s, i, stats), e: e}
}

// electionQueue is where the candidates' keys are.
const electionQueue = election.DefaultPrefix + electionName + "/"

// electionNemesis returns the nemesis of the election tests; hitHolder
// makes a cut or a slowdown always hit the leader.
func electionNemesis(s *suite, hitHolder bool) *Nemesis {
	return &Nemesis{
		Cluster: s.c, Admin: s.admin, Proxies: s.proxies, Rec: s.rec, Clock: s.clock,
		Rand:   rand.New(rand.NewSource(s.rng.Int63())),
		CutFor: 3 * time.Second, FaultFor: time.Second, Latency: 100 * time.Millisecond,
		HitHolder: hitHolder,
		Holder: func(ctx context.Context) (int, clientv3.LeaseID, bool, error) {
			resp, err := s.admin.Get(ctx, electionQueue, clientv3.WithFirstCreate()...)
			if err != nil || len(resp.Kvs) == 0 {
				return 0, 0, false, err
			}
			kv := resp.Kvs[0]
			c, err := strconv.Atoi(strings.TrimPrefix(string(kv.Value), "candidate-"))
			if err != nil {
				return 0, 0, false, fmt.Errorf("leader %s: value %q", kv.Key, kv.Value)
			}
			return c, clientv3.LeaseID(kv.Lease), true, nil
		},
	}
}

// checkElection checks that no candidate key is left and the history.
func (s *suite) checkElection() {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if _, err := testkit.WaitKeys(ctx, s.admin, electionQueue, empty); err != nil {
		s.t.Errorf("candidate keys left behind: %v", err)
	}
	s.check()
}

type candidate struct {
	worker
	e *election.Election
}

func (c *candidate) run(ctx context.Context) { repeat(ctx, c.once) }

// lead leads with Run until ctx ends. Each term's duties do three to
// eight guarded writes, retrying failed ones until their ctx ends, and
// return, which hands over. Terms last much longer than handovers, so
// that a fault that hits the leader most likely hits it in its duties.
func (c *candidate) lead(ctx context.Context) {
	s := c.s
	prevEnd := s.clock.Now() // no term of this candidate can begin before
	err := c.e.Run(ctx, election.Callbacks{
		OnStartedLeading: func(dctx context.Context) {
			start := s.clock.Now()
			// Run campaigned for this term after the previous one's
			// duties returned; whether it gave that term up it does not
			// say, so ends are left open.
			h := Hold{Client: c.id, Token: c.e.Rev(), AcqCall: prevEnd, AcqRet: start, Alive: prevEnd,
				LeaseFloor: prevEnd, ReleaseCall: Never}
			b := etcderr.Backoff{Min: 20 * time.Millisecond, Max: 500 * time.Millisecond}
			for n := 3 + c.rng.Intn(6); n > 0 && dctx.Err() == nil; {
				a, call, tried := c.increment(dctx, c.e.Guard(), h.Token)
				if !tried {
					c.stats.add("write: read failed")
				} else {
					c.stats.add("write: " + a.Outcome.String())
				}
				if tried && a.Outcome == Committed {
					n--
					h.Alive = max(h.Alive, call)
					s.prog.Record(c.id, call)
					b.Reset()
				} else if b.Wait(dctx) != nil {
					break
				}
			}
			end := s.clock.Now()
			s.rec.Hold(h)
			s.rec.Duty(Duty{Client: c.id, Token: h.Token, Start: start, End: end})
			prevEnd = end
		},
		OnStoppedLeadingCause: func(cause error) {
			if errors.Is(cause, election.ErrStopped) {
				c.stats.add("term ended: Run stopped")
			} else {
				c.stats.add("term ended: " + classify(cause))
			}
		},
	})
	if err != nil {
		s.t.Errorf("candidate %d: Run: %v", c.id, err)
	}
}

// once campaigns, does one to three guarded writes as leader and resigns.
// It reports whether a write committed.
func (c *candidate) once(ctx context.Context) bool {
	s := c.s
	acqCall := s.clock.Now()
	err := s.wd.Do(ctx, "Campaign", acquireTimeout, func(ctx context.Context) error {
		return c.e.Campaign(ctx, fmt.Sprintf("candidate-%d", c.id))
	})
	acqRet := s.clock.Now()
	if err != nil {
		c.stats.add("campaign: " + classify(err))
		return false
	}
	// Election exposes no lease deadline, so a term lost without Resign
	// is only known to have lasted until its last committed write.
	h := Hold{Client: c.id, Token: c.e.Rev(), AcqCall: acqCall, AcqRet: acqRet, Alive: acqCall,
		LeaseFloor: acqCall, ReleaseCall: Never}
	bg := context.WithoutCancel(ctx)
	progressed := c.writes(bg, c.e.Guard(), &h, nil)
	// Resign returns nil for a term that was already lost, whose key may
	// still await expiry: only a resignation of a live term ends it.
	lostBefore := c.e.Err()
	h.ReleaseCall = s.clock.Now()
	err = s.wd.Do(bg, "Resign", opTimeout, c.e.Resign)
	h.ReleaseRet = s.clock.Now()
	h.Released = err == nil && lostBefore == nil
	switch {
	case err != nil:
		c.stats.add("resign: " + classify(err))
	case lostBefore != nil:
		c.stats.add("resign: term already lost: " + classify(lostBefore))
	}
	return c.ended(h, acqCall, progressed)
}
