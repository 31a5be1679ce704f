package embedtest

import (
	"context"
	"fmt"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/types"
)

// WaitLeader waits until every running member that is not partitioned
// agrees on one leader among them, and returns the leader's index. A
// partitioned member is left out: it cannot know who leads.
//
// etcd signals no event for "all members agree", so WaitLeader polls the
// members' in-process raft state once per heartbeat; ctx bounds the wait.
// It fails at once if no member is running.
func (c *Cluster) WaitLeader(ctx context.Context) (int, error) {
	return c.waitLeader(ctx, -1)
}

// waitLeader waits for an agreed leader; with want >= 0, for that one.
func (c *Cluster) waitLeader(ctx context.Context, want int) (int, error) {
	tick := time.NewTicker(c.cfg.tick)
	defer tick.Stop()
	for {
		if err := c.checkOpen(); err != nil {
			return -1, err
		}
		if err := ctx.Err(); err != nil {
			return -1, fmt.Errorf("embedtest: wait for leader: %w", err)
		}
		lead, err := c.agreedLeader()
		if err != nil {
			return -1, err
		}
		if lead >= 0 && (want < 0 || lead == want) {
			return lead, nil
		}
		select {
		case <-ctx.Done():
		case <-tick.C:
		}
	}
}

// agreedLeader returns the index of the leader that every running,
// connected member reports, or -1 while they do not agree.
func (c *Cluster) agreedLeader() (int, error) {
	c.mu.Lock()
	cut := append([]bool(nil), c.partitioned...)
	c.mu.Unlock()

	lead, voters := types.ID(0), 0
	index := map[types.ID]int{}
	for i, m := range c.members {
		e := m.Etcd()
		if e == nil || cut[i] {
			continue
		}
		index[e.Server.MemberID()] = i
		l := e.Server.Leader()
		if l == 0 || (voters > 0 && l != lead) {
			return -1, nil
		}
		lead = l
		voters++
	}
	if voters == 0 {
		return -1, fmt.Errorf("%w: no member is running and connected", ErrMemberStopped)
	}
	i, ok := index[lead]
	if !ok { // a member that is stopped or cut off, and does not know it yet
		return -1, nil
	}
	return i, nil
}

// MoveLeader makes member to the etcd leader, through the current leader
// as etcdctl move-leader does, and waits until every running, connected
// member agrees. It returns at once if to already leads.
func (c *Cluster) MoveLeader(ctx context.Context, to int) error {
	if err := c.checkOpen(); err != nil {
		return err
	}
	target, err := c.member(to)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("embedtest: move leader: %w", err)
	}
	if !target.Running() {
		return fmt.Errorf("%w: %s", ErrMemberStopped, target.name)
	}
	lead, err := c.WaitLeader(ctx)
	if err != nil {
		return err
	}
	if lead == to {
		return nil
	}
	e := c.members[lead].Etcd()
	if e == nil {
		return fmt.Errorf("%w: leader %s stopped", ErrMemberStopped, c.members[lead].name)
	}
	if err := e.Server.MoveLeader(ctx, uint64(e.Server.MemberID()), target.ID()); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("embedtest: move leader to %s: %w", target.name, ctx.Err())
		}
		return fmt.Errorf("embedtest: move leader to %s: %w", target.name, err)
	}
	if _, err := c.waitLeader(ctx, to); err != nil {
		return fmt.Errorf("embedtest: move leader to %s: %w", target.name, err)
	}
	return nil
}
