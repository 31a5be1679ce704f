package embedtest

import (
	"fmt"
	"slices"
)

// Partition cuts member i off from all its peers, both ways, as a network
// partition would: each side drops the raft messages it would send to the
// other. Clients still reach the member, which is how a test sees what a
// client of a minority member sees. A partitioned leader steps down after
// an election timeout and the others elect a new one if they have a
// quorum. The partition lasts until Heal, across Restart of either side.
//
// It uses etcd's CutPeer on every server involved; the TCP connections
// between members stay open.
func (c *Cluster) Partition(i int) error {
	if err := c.checkOpen(); err != nil {
		return err
	}
	m, err := c.member(i)
	if err != nil {
		return err
	}
	if !m.Running() {
		return fmt.Errorf("%w: %s", ErrMemberStopped, m.name)
	}
	c.mu.Lock()
	c.partitioned[i] = true
	c.mu.Unlock()
	c.applyLinks(true)
	return nil
}

// Heal ends a Partition of member i. Links to members that are themselves
// partitioned stay cut. Healing a member that is not partitioned does
// nothing. The member catches up with the leader on its own; to wait for
// that, do a linearizable read through it.
func (c *Cluster) Heal(i int) error {
	if err := c.checkOpen(); err != nil {
		return err
	}
	if _, err := c.member(i); err != nil {
		return err
	}
	c.mu.Lock()
	was := c.partitioned[i]
	c.partitioned[i] = false
	c.mu.Unlock()
	if was {
		c.applyLinks(true)
	}
	return nil
}

// applyLinks makes every running server drop or pass its messages to
// each peer as the partition state says: a link is cut if either end is
// partitioned. Without force it does nothing while nothing is
// partitioned, which is the state of a fresh transport.
func (c *Cluster) applyLinks(force bool) {
	c.linkMu.Lock()
	defer c.linkMu.Unlock()
	c.mu.Lock()
	cut := append([]bool(nil), c.partitioned...)
	c.mu.Unlock()
	if !force && !slices.Contains(cut, true) {
		return
	}
	for a, ma := range c.members {
		e := ma.Etcd()
		if e == nil {
			continue
		}
		for b, mb := range c.members {
			if a == b {
				continue
			}
			if cut[a] || cut[b] {
				e.Server.CutPeer(mb.memberID())
			} else {
				e.Server.MendPeer(mb.memberID())
			}
		}
	}
}
