package chaos

import (
	"context"
	"fmt"
	"math/rand"
	"strconv"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/leasekit/leasekit/election"
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
		e, err := election.New(s.clients[i], electionName, election.WithTTL(ttl))
		if err != nil {
			t.Fatal(err)
		}
		c := &candidate{s: s, id: i, cli: s.clients[i], e: e, stats: &stats,
			rng: rand.New(rand.NewSource(s.rng.Int63()))}
		run = append(run, c.run)
	}
	queue := election.DefaultPrefix + electionName + "/"
	nem := &Nemesis{
		Cluster: s.c, Admin: s.admin, Proxies: s.proxies, Rec: s.rec, Clock: s.clock,
		Rand:   rand.New(rand.NewSource(s.rng.Int63())),
		CutFor: 3 * time.Second, FaultFor: time.Second, Latency: 100 * time.Millisecond,
		Holder: func(ctx context.Context) (int, clientv3.LeaseID, bool, error) {
			resp, err := s.admin.Get(ctx, queue, clientv3.WithFirstCreate()...)
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
	s.loop(nem, rounds(t, 4), s.schedule(0), run)

	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := waitEmpty(ctx, s.admin, queue); err != nil {
		t.Errorf("candidate keys left behind: %v", err)
	}
	s.check()
	t.Logf("candidate outcomes:\n%s", stats.String())
}

type candidate struct {
	s     *suite
	id    int
	cli   *clientv3.Client
	e     *election.Election
	rng   *rand.Rand
	stats *tally
	seq   int
}

func (c *candidate) run(ctx context.Context) {
	b := Backoff{Min: 20 * time.Millisecond, Max: 500 * time.Millisecond}
	for ctx.Err() == nil {
		if c.once(ctx) {
			b.Reset()
		} else if b.Wait(ctx) != nil {
			return
		}
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
	progressed := false
	for range 1 + c.rng.Intn(3) {
		c.seq++
		a, call, tried := s.increment(bg, c.id, c.cli, c.e.Guard(), h.Token,
			fmt.Sprintf("%s%d-%06d", s.recordsKey(), c.id, c.seq))
		if !tried {
			c.stats.add("write: read failed")
			break
		}
		c.stats.add("write: " + a.Outcome.String())
		if a.Outcome != Committed {
			break
		}
		h.Alive = max(h.Alive, call)
		progressed = true
	}
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
	s.rec.Hold(h)
	if progressed {
		s.prog.Record(c.id, acqCall)
	}
	return progressed
}
