package chaos

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/leasekit/leasekit/embedtest"
	"github.com/leasekit/leasekit/internal/etcderr"
)

// Kind is a kind of fault.
type Kind int

// The faults the nemesis injects.
const (
	// CutClient blackholes all traffic of one client, both ways, long
	// enough for its lease to expire, then heals it.
	CutClient Kind = iota
	// KillLeader crashes the etcd leader and restarts it with its data.
	KillLeader
	// RevokeHolder revokes the lease of the lock's current holder from
	// outside, as an operator or a buggy peer could.
	RevokeHolder
	// MoveLeader hands etcd leadership to another member.
	MoveLeader
	// PartitionMember cuts a member off from its peers; its clients still
	// reach it.
	PartitionMember
	// StopMember stops a member gracefully and restarts it.
	StopMember
	// SlowClient delays all traffic of one client.
	SlowClient
	// KillMember crashes a member chosen at random, leader or not.
	KillMember
)

// Kinds lists every kind of fault, in the order the short form of the
// suite cycles through them.
var Kinds = []Kind{CutClient, KillLeader, RevokeHolder, MoveLeader, PartitionMember, StopMember, SlowClient, KillMember}

func (k Kind) String() string {
	switch k {
	case CutClient:
		return "cut-client"
	case KillLeader:
		return "kill-leader"
	case RevokeHolder:
		return "revoke-holder"
	case MoveLeader:
		return "move-leader"
	case PartitionMember:
		return "partition-member"
	case StopMember:
		return "stop-member"
	case SlowClient:
		return "slow-client"
	case KillMember:
		return "kill-member"
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// Nemesis injects faults into a cluster and the clients of it. Each client
// reaches etcd only through its own proxies, one per member.
type Nemesis struct {
	Cluster *embedtest.Cluster
	// Admin is a client that reaches every member directly, for
	// revocations and for reading the state.
	Admin *clientv3.Client
	// Proxies lists, for each client, the proxies it reaches etcd through.
	Proxies [][]*embedtest.Proxy
	// Holder finds the current holder: its client and its lease. ok is
	// false when nothing is held.
	Holder func(ctx context.Context) (client int, lease clientv3.LeaseID, ok bool, err error)
	Rec    *Recorder
	Clock  *Clock
	Rand   *rand.Rand
	// CutFor is how long CutClient lasts; make it longer than the TTL so
	// that the client loses its lease. FaultFor is how long other faults
	// last.
	CutFor, FaultFor time.Duration
	// Latency is what SlowClient adds each way.
	Latency time.Duration
	// HitHolder makes CutClient and SlowClient hit the holder whenever
	// there is one, instead of half the time.
	HitHolder bool
}

// Inject injects a fault of kind, keeps it for its duration and heals it.
// It returns once the cluster has an agreed leader again.
func (n *Nemesis) Inject(ctx context.Context, round int, kind Kind) (Fault, error) {
	f := Fault{Round: round, Kind: kind, At: n.Clock.Now()}
	heal, target, err := n.start(ctx, kind)
	f.Target = target
	if err != nil {
		return f, fmt.Errorf("round %d: inject %v: %w", round, kind, err)
	}
	if heal != nil {
		d := n.FaultFor
		if kind == CutClient {
			d = n.CutFor
		}
		if err := etcderr.Sleep(ctx, d); err != nil {
			heal(context.WithoutCancel(ctx))
			return f, err
		}
		if err := heal(ctx); err != nil {
			return f, fmt.Errorf("round %d: heal %v of %s: %w", round, kind, target, err)
		}
	}
	f.Heal = n.Clock.Now()
	n.Rec.Fault(f)
	if _, err := n.Cluster.WaitLeader(ctx); err != nil {
		return f, fmt.Errorf("round %d: after %v: %w", round, kind, err)
	}
	return f, nil
}

// start injects the fault and returns what heals it (nil for a fault that
// is over at once) and a name for what it hit.
func (n *Nemesis) start(ctx context.Context, kind Kind) (heal func(context.Context) error, target string, err error) {
	c := n.Cluster
	switch kind {
	case CutClient, SlowClient:
		// Half the time it hits the holder, which then loses its hold.
		i := n.Rand.Intn(len(n.Proxies))
		if n.Rand.Intn(2) == 0 || n.HitHolder {
			hctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			if c, _, ok, err := n.Holder(hctx); err == nil && ok {
				i = c
			}
			cancel()
		}
		for _, p := range n.Proxies[i] {
			if kind == CutClient {
				p.Cut()
			} else {
				p.SetLatency(n.Latency)
			}
		}
		return func(context.Context) error {
			for _, p := range n.Proxies[i] {
				if kind == CutClient {
					p.Heal()
				} else {
					p.SetLatency(0)
				}
			}
			return nil
		}, fmt.Sprintf("client %d", i), nil

	case KillLeader, KillMember, StopMember:
		lead, err := c.WaitLeader(ctx)
		if err != nil {
			return nil, "", err
		}
		i := lead
		if kind != KillLeader {
			i = n.Rand.Intn(c.Members())
		}
		m := c.Member(i)
		// An embedded etcd that stops while a client request is being
		// served can close its backend under the request and panic the
		// whole process (bbolt Tx.Bucket on a nil tx; etcd #17223, #8761).
		// So the clients' traffic to the member is cut first and given a
		// moment to drain; they see it go silent, then it crashes.
		n.quiesce(i, true)
		if err := etcderr.Sleep(ctx, drainFor); err != nil {
			n.quiesce(i, false)
			return nil, m.Name(), err
		}
		if kind == StopMember {
			err = m.Stop()
		} else {
			err = m.Kill()
		}
		if err != nil {
			n.quiesce(i, false)
			return nil, m.Name(), err
		}
		return func(ctx context.Context) error {
			defer n.quiesce(i, false)
			return m.Restart(ctx)
		}, m.Name(), nil

	case PartitionMember:
		i := n.Rand.Intn(c.Members())
		if err := c.Partition(i); err != nil {
			return nil, c.Member(i).Name(), err
		}
		return func(context.Context) error { return c.Heal(i) }, c.Member(i).Name(), nil

	case MoveLeader:
		lead, err := c.WaitLeader(ctx)
		if err != nil {
			return nil, "", err
		}
		to := (lead + 1 + n.Rand.Intn(c.Members()-1)) % c.Members()
		name := fmt.Sprintf("%s->%s", c.Member(lead).Name(), c.Member(to).Name())
		return nil, name, c.MoveLeader(ctx, to)

	case RevokeHolder:
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		client, lease, ok, err := n.Holder(rctx)
		if err != nil || !ok {
			return nil, "nobody", err
		}
		v := Revoke{Client: client, Lease: int64(lease), Call: n.Clock.Now()}
		_, err = n.Admin.Revoke(rctx, lease)
		v.Ret = n.Clock.Now()
		// Recorded even if the call failed: it may have been applied.
		n.Rec.Revoke(v)
		target := fmt.Sprintf("client %d lease %x", client, int64(lease))
		if errors.Is(err, rpctypes.ErrLeaseNotFound) {
			// Released or lost between the read and the revoke.
			return nil, target + " (already gone)", nil
		}
		if err != nil {
			return nil, target, fmt.Errorf("revoke: %w", err)
		}
		return nil, target, nil
	}
	return nil, "", fmt.Errorf("unknown fault kind %v", kind)
}

// drainFor is how long requests in flight to a member get to finish
// before the member is stopped.
const drainFor = 200 * time.Millisecond

// quiesce cuts (or heals) every client's proxy to member i.
func (n *Nemesis) quiesce(i int, cut bool) {
	for _, ps := range n.Proxies {
		if cut {
			ps[i].Cut()
		} else {
			ps[i].Heal()
		}
	}
}
