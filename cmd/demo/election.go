package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/leasekit/leasekit/election"
	"github.com/leasekit/leasekit/internal/benchkit"
)

// termLog is one term of leadership as the replicas lived it.
type termLog struct {
	who        int
	rev        int64
	start, end time.Time
	writes     int // guarded duty writes that etcd applied
	ended      string
}

func replica(i int) string { return "r" + strconv.Itoa(i+1) }

// runElection runs three replicas through election.Run. The leader
// resigns (the next leads at once), then the new leader is cut off from
// etcd (the next leads after the TTL, and only once the old one has
// stopped its duties).
func runElection(ctx context.Context, e *env) error {
	sc := e.scope()
	defer sc.close()
	const name = "nightly-billing"
	ttl := e.size.faultTTL
	const dutySteps = 3 // guarded writes a leader makes before the next step of the story
	line := e.electionPrefix() + name + "/"
	dutyKey := e.dataKey("billing-run")
	e.out.say(`Three replicas r1, r2, r3 run election.Run for %q, asking for a %v
TTL. The leader's duties write a progress key every 100ms through
Election.Txn, which etcd applies only while the term lasts. Each replica
reaches etcd through a proxy of its own, so any one can be cut off. An
observer that is not a candidate follows the leader with Observe.`, name, ttl)

	type replicaState struct {
		el        *election.Election
		cut, heal func()
	}
	rs := make([]*replicaState, 3)
	for i := range rs {
		cli, p, err := sc.cuttableClient(i)
		if err != nil {
			return err
		}
		el, err := election.New(cli, name, election.WithTTL(ttl), election.WithValue(replica(i)),
			election.WithPrefix(e.electionPrefix()))
		if err != nil {
			return err
		}
		rs[i] = &replicaState{el: el, cut: p.Cut, heal: p.Heal}
	}

	watcher, err := election.New(e.admin, name, election.WithPrefix(e.electionPrefix()))
	if err != nil {
		return err
	}
	octx, stopObserve := context.WithCancel(ctx)
	var bg sync.WaitGroup
	defer bg.Wait()
	defer stopObserve()
	observed := make(chan election.Leader, 64)
	bg.Go(func() {
		for l := range watcher.Observe(octx) {
			if l.Rev == 0 {
				e.out.event("observer: no leader")
			} else {
				e.out.event("observer: the leader is %s, term %d", l.Value, l.Rev)
			}
			select {
			case observed <- l:
			default:
			}
		}
	})
	// observe waits until the observer reports who as the leader, so that
	// the story moves on only once everyone can see where it stands.
	observe := func(who int) error {
		for {
			select {
			case l := <-observed:
				if l.Value == replica(who) {
					return nil
				}
			case <-ctx.Done():
				return fmt.Errorf("waiting for the observer to see %s lead: %w", replica(who), ctx.Err())
			}
		}
	}

	started := make(chan termLog, 16)
	stopped := make(chan termLog, 16)
	steps := make(chan termLog, 64)
	// Each replica's Run has a context of its own, so that the story can
	// stop the followers before the leader.
	stopRun := make([]context.CancelFunc, len(rs))
	var runs sync.WaitGroup
	defer runs.Wait()
	defer func() {
		for _, stop := range stopRun {
			if stop != nil {
				stop()
			}
		}
	}()
	startReplica := func(i int) {
		el := rs[i].el
		runCtx, stop := context.WithCancel(ctx)
		stopRun[i] = stop
		runs.Go(func() {
			err := el.Run(runCtx, election.Callbacks{
				OnStartedLeading: func(dctx context.Context) {
					t := termLog{who: i, rev: el.Rev(), start: time.Now()}
					e.out.event("%s starts its duties (term %d)", replica(i), t.rev)
					started <- t
					tick := time.NewTicker(100 * time.Millisecond)
					defer tick.Stop()
					for {
						v := fmt.Sprintf("%s, term %d, step %d", replica(i), t.rev, t.writes+1)
						if _, err := el.Txn(dctx, clientv3.OpPut(dutyKey, v)); err == nil {
							t.writes++
							select {
							case steps <- t:
							default:
							}
						}
						select {
						case <-dctx.Done():
							t.end = time.Now()
							if err := el.Err(); errors.Is(err, election.ErrLost) {
								t.ended = "cut off: lease lost"
								e.out.event("%s's duties are cancelled: %v", replica(i), err)
							} else {
								e.out.event("%s's duties stop", replica(i))
							}
							stopped <- t
							return
						case <-tick.C:
						}
					}
				},
			})
			if err != nil {
				e.out.event("%s: Run: %v", replica(i), err)
			}
		})
	}
	recv := func(ch <-chan termLog, what string) (termLog, error) {
		select {
		case t := <-ch:
			return t, nil
		case <-ctx.Done():
			return termLog{}, fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		}
	}
	// working waits until the leader who has made n guarded writes.
	working := func(who, n int) error {
		for {
			t, err := recv(steps, replica(who)+"'s duties")
			if err != nil || (t.who == who && t.writes >= n) {
				return err
			}
		}
	}

	var terms []termLog
	startReplica(0)
	if _, err := recv(started, "r1 to lead"); err != nil {
		return err
	}
	if err := observe(0); err != nil {
		return err
	}
	startReplica(1)
	if err := waitKeys(ctx, e.admin, line, 2); err != nil {
		return err
	}
	startReplica(2)
	if err := waitKeys(ctx, e.admin, line, 3); err != nil {
		return err
	}
	e.out.event("r2 and r3 are in line behind r1")
	if err := working(0, dutySteps); err != nil {
		return err
	}

	// Handover: the leader resigns.
	e.out.event("r1 resigns")
	resignAt := time.Now()
	if err := rs[0].el.Resign(ctx); err != nil {
		return err
	}
	ended, err := recv(stopped, "r1's duties to stop")
	if err != nil {
		return err
	}
	ended.ended = "resigned"
	terms = append(terms, ended)
	second, err := recv(started, "the next leader")
	if err != nil {
		return err
	}
	handover := second.start.Sub(resignAt)
	if second.who != 1 {
		return fmt.Errorf("%s leads after r1 resigned; r2 was next in line", replica(second.who))
	}
	if err := observe(1); err != nil {
		return err
	}
	if err := waitKeys(ctx, e.admin, line, 3); err != nil {
		return err
	}
	e.out.event("r1's Run campaigns again: it is back in line, behind r3")
	if err := working(1, dutySteps); err != nil {
		return err
	}

	// Failover: the leader is cut off.
	cutAt := time.Now()
	rs[1].cut()
	e.out.event("r2, the leader, is cut off from etcd")
	stop := e.out.progress("waiting for r2's lease to run out", nil)
	lost, err := recv(stopped, "r2's duties to stop")
	var third termLog
	if err == nil {
		terms = append(terms, lost)
		third, err = recv(started, "the next leader")
	}
	stop()
	if err != nil {
		return err
	}
	if !lost.end.Before(third.start) {
		return fmt.Errorf("the new leader started %v before the old one stopped", lost.end.Sub(third.start))
	}
	if err := observe(third.who); err != nil {
		return err
	}
	rs[1].heal()
	e.out.event("r2's network heals; its Run campaigns again")
	stop = e.out.progress("waiting for r2 to line up again", nil)
	err = waitKeys(ctx, e.admin, line, 3)
	stop()
	if err != nil {
		return err
	}
	e.out.event("r2 is back in line")
	if err := working(third.who, dutySteps); err != nil {
		return err
	}

	e.out.event("the demo stops the followers' Run, then the leader's")
	for i, stop := range stopRun {
		if i != third.who {
			stop()
		}
	}
	if err := waitKeys(ctx, e.admin, line, 1); err != nil {
		return err
	}
	stopRun[third.who]()
	last, err := recv(stopped, "the last term to end")
	if err != nil {
		return err
	}
	last.ended = "Run's ctx ended"
	terms = append(terms, last)
	runs.Wait()
	stopObserve()
	bg.Wait()

	e.out.say(`
r1 -> r2: %s from the resign to r2's duties starting.

r2 -> %s: r2's duties were cancelled %s after the cut, before its lease could
expire; %s's began %s after the cut, %s after r2's ended.`,
		ms(handover), replica(third.who), ms(lost.end.Sub(cutAt)),
		replica(third.who), ms(third.start.Sub(cutAt)), ms(third.start.Sub(lost.end)))
	var rows [][]string
	for k, t := range terms {
		if k > 0 && (t.rev <= terms[k-1].rev || t.start.Before(terms[k-1].end)) {
			return fmt.Errorf("terms %d and %d overlap or do not increase", terms[k-1].rev, t.rev)
		}
		rows = append(rows, []string{strconv.FormatInt(t.rev, 10), replica(t.who), e.out.stamp(t.start),
			e.out.stamp(t.end), strconv.Itoa(t.writes), t.ended})
	}
	e.out.say("\nThe terms (a term is also a fencing token):")
	e.out.table([]string{"term", "leader", "duties from", "to", "guarded writes", "how it ended"}, rows)
	e.out.say("Terms increase and never overlap: each leader stopped before the next began.")
	e.sum.add("election", "resign -> next leader's duties start", ms(handover))
	e.sum.add("election", "cut-off leader -> its duties stop",
		fmt.Sprintf("%s after the cut (TTL %v)", ms(lost.end.Sub(cutAt)), rs[1].el.TTL()))
	e.sum.add("election", "cut-off leader -> next leader's duties start",
		fmt.Sprintf("%s after the cut, %s after the old stopped", ms(third.start.Sub(cutAt)), ms(third.start.Sub(lost.end))))

	return compareHandover(ctx, e)
}

// compareHandover times Resign -> the next candidate's Campaign returns,
// for leasekit and for etcd's concurrency.Election, in the same run,
// through internal/benchkit: the two take turns in pairs of rounds.
func compareHandover(ctx context.Context, e *env) error {
	s := e.size
	e.out.say(`
Handover time, %d rounds of %d each: two candidates with their own clients
take turns; the leader resigns once the other is in line, and we time
until the other's Campaign returns. leasekit and concurrency.Election
alternate round by round.`, 2*s.handoverPairs, s.handoversPerRound)
	srv := e.benchServer()
	defer srv.Close()
	stop := e.out.progress("timing handovers", nil)
	defer stop()
	c, err := benchkit.CompareHandovers(ctx, srv, "election", benchkit.LeasekitElection(), benchkit.ConcurrencyElection(),
		benchkit.Options{Pairs: s.handoverPairs, Handovers: s.handoversPerRound, Probes: -1})
	stop()
	if err != nil {
		return err
	}
	lk, cc := benchkit.Sum(c.RoundsA), benchkit.Sum(c.RoundsB)
	e.out.table([]string{"implementation", "handover p50", "max"}, [][]string{
		{"leasekit election", ms(lk.Handoff50), ms(lk.HandoffMax)},
		{"etcd concurrency.Election", ms(cc.Handoff50), ms(cc.HandoffMax)},
	})
	e.sum.add("election", fmt.Sprintf("Resign -> next Campaign returns, %d handovers", lk.Takes),
		fmt.Sprintf("p50 %s; concurrency.Election p50 %s (%s)", ms(lk.Handoff50), ms(cc.Handoff50), e.mode()))
	return nil
}
