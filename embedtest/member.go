package embedtest

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"

	"go.etcd.io/etcd/client/pkg/v3/types"
	"go.etcd.io/etcd/server/v3/embed"
)

// Member is one etcd server of a Cluster. Its ports and data directory stay
// the same across Stop and Restart. It is safe for concurrent use.
type Member struct {
	cluster   *Cluster
	index     int
	name      string
	dataDir   string
	clientURL url.URL
	peerURL   url.URL

	mu             sync.Mutex
	etcd           *embed.Etcd // nil while stopped
	id             types.ID    // raft member ID, kept while stopped
	wiped          bool        // KillAndWipe dropped the data; only Rejoin may start it
	initialCluster string
}

// Name returns the member's etcd name ("m0", "m1", ...).
func (m *Member) Name() string { return m.name }

// ID returns the member's etcd member ID, as clientv3's Cluster API and
// MemberList report it. It stays the same across Stop, Kill and Restart,
// and changes when Rejoin adds the member back as a new one.
func (m *Member) ID() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return uint64(m.id)
}

func (m *Member) memberID() types.ID {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.id
}

// ClientURL returns the URL clients use to reach this member, such as
// "http://127.0.0.1:23790".
func (m *Member) ClientURL() string { return m.clientURL.String() }

// PeerURL returns the URL the other members use to reach this member.
func (m *Member) PeerURL() string { return m.peerURL.String() }

// Running reports whether the member is serving.
func (m *Member) Running() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.etcd != nil
}

// Etcd returns the running embedded server, or nil while the member is
// stopped. It is an escape hatch for tests that need etcd internals.
func (m *Member) Etcd() *embed.Etcd {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.etcd
}

func (m *Member) embedConfig(state, initialCluster string) *embed.Config {
	c := m.cluster.cfg
	ec := embed.NewConfig()
	ec.Name = m.name
	ec.Dir = m.dataDir
	ec.ListenClientUrls = []url.URL{m.clientURL}
	ec.AdvertiseClientUrls = []url.URL{m.clientURL}
	ec.ListenPeerUrls = []url.URL{m.peerURL}
	ec.AdvertisePeerUrls = []url.URL{m.peerURL}
	ec.InitialCluster = initialCluster
	ec.InitialClusterToken = "embedtest-" + m.cluster.token
	ec.ClusterState = state
	ec.TickMs = uint(c.tick.Milliseconds())
	ec.ElectionMs = uint(c.election.Milliseconds())
	ec.UnsafeNoFsync = !c.fsync
	// Auth logins hash passwords with bcrypt. etcd's default cost makes a
	// login take about a second under the race detector, and every
	// client logs in again after a change of users or roles; the minimum
	// cost keeps auth tests fast. It only weakens stored test passwords.
	ec.BcryptCost = 4 // bcrypt.MinCost
	ec.EnableGRPCGateway = false
	// The strict check refuses to add a member unless every peer link has
	// been up for 5s, which would make Rejoin soon after Start wait that
	// long. Tests change membership on purpose; see the package doc.
	ec.StrictReconfigCheck = false
	ec.ZapLoggerBuilder = embed.NewZapLoggerBuilder(c.logger.Named(m.name))
	m.cluster.serveTLS(ec)
	return ec
}

// launch starts the server without waiting for it to be ready. Close
// waits for a launch in flight, so a member never starts after Close.
func (m *Member) launch(state string) error {
	c := m.cluster
	if err := c.begin(); err != nil {
		return err
	}
	defer c.end()

	m.mu.Lock()
	if m.etcd != nil {
		m.mu.Unlock()
		return fmt.Errorf("%w: %s", ErrMemberRunning, m.name)
	}
	e, err := embed.StartEtcd(m.embedConfig(state, m.initialCluster))
	if err != nil {
		m.mu.Unlock()
		return fmt.Errorf("embedtest: start %s: %w", m.name, err)
	}
	m.etcd = e
	m.id = e.Server.MemberID()
	m.wiped = false
	m.mu.Unlock()

	// A fresh transport knows nothing of a partition set before.
	c.applyLinks(false)
	return nil
}

// waitReady waits until the member serves clients, which needs a cluster
// leader.
func (m *Member) waitReady(ctx context.Context) error {
	e := m.Etcd()
	if e == nil {
		return fmt.Errorf("%w: %s", ErrMemberStopped, m.name)
	}
	select {
	case <-e.Server.ReadyNotify():
		return nil
	case <-e.Server.StopNotify():
		return fmt.Errorf("%w: %s stopped before it was ready", ErrMemberStopped, m.name)
	case err, ok := <-e.Err():
		if !ok {
			return fmt.Errorf("%w: %s stopped before it was ready", ErrMemberStopped, m.name)
		}
		return fmt.Errorf("embedtest: %s failed: %w", m.name, err)
	case <-ctx.Done():
		return fmt.Errorf("embedtest: wait for %s: %w", m.name, ctx.Err())
	}
}

// shutdown stops the server if it runs. With hard set it stops raft first,
// so that a leader does not hand its leadership over: a crash, not a
// graceful stop. It reports whether the member was running.
func (m *Member) shutdown(hard bool) bool {
	m.mu.Lock()
	e := m.etcd
	m.etcd = nil
	m.mu.Unlock()
	if e == nil {
		return false
	}
	if hard {
		e.Server.HardStop()
	}
	e.Close()
	return true
}

// stop implements Stop, Kill and KillAndWipe.
func (m *Member) stop(hard, wipe bool) error {
	if err := m.cluster.checkOpen(); err != nil {
		return err
	}
	if !m.shutdown(hard) {
		return fmt.Errorf("%w: %s", ErrMemberStopped, m.name)
	}
	if !wipe {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.etcd != nil { // restarted meanwhile; leave its data alone
		return fmt.Errorf("%w: %s", ErrMemberRunning, m.name)
	}
	m.wiped = true
	if err := os.RemoveAll(m.dataDir); err != nil {
		return fmt.Errorf("embedtest: wipe %s: %w", m.name, err)
	}
	return nil
}

// Stop stops the member gracefully, keeping its data: a leader first hands
// leadership to another member. Restart brings it back.
func (m *Member) Stop() error { return m.stop(false, false) }

// Kill stops the member abruptly, keeping its data: a leader does not hand
// leadership over, so the others must time out and elect a new one, as
// after a crash. Restart brings it back.
func (m *Member) Kill() error { return m.stop(true, false) }

// KillAndWipe kills the member as Kill does, then deletes its data
// directory, as when a machine dies with its disk. The member stays in the
// cluster's membership, counting against quorum, until Rejoin replaces it;
// Restart refuses with ErrMemberWiped.
func (m *Member) KillAndWipe() error { return m.stop(true, true) }

// Restart starts a stopped member again on the same ports and data and
// waits until it serves clients. If ctx ends first, the member keeps
// starting in the background; Stop or Close stops it.
func (m *Member) Restart(ctx context.Context) error {
	if err := m.cluster.checkOpen(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("embedtest: restart %s: %w", m.name, err)
	}
	m.mu.Lock()
	wiped := m.wiped && m.etcd == nil
	m.mu.Unlock()
	if wiped {
		return fmt.Errorf("%w: %s", ErrMemberWiped, m.name)
	}
	if err := m.launch(embed.ClusterStateFlagExisting); err != nil {
		return err
	}
	return m.waitReady(ctx)
}

// Rejoin brings a stopped member back as a new member with empty data,
// the way an operator replaces a machine that lost its disk: it removes
// the old member from the cluster, adds one with the same name and URLs
// (and a new ID), starts it and waits until it has caught up and serves
// clients. It works after Stop, Kill or KillAndWipe, deletes whatever
// data the member kept, and needs the other members to have a leader.
func (m *Member) Rejoin(ctx context.Context) error {
	c := m.cluster
	if err := c.checkOpen(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("embedtest: rejoin %s: %w", m.name, err)
	}
	if m.Running() {
		return fmt.Errorf("%w: %s", ErrMemberRunning, m.name)
	}
	// From here on the old identity is unusable: Restart must not revive it.
	m.mu.Lock()
	m.wiped = true
	m.mu.Unlock()
	if err := os.RemoveAll(m.dataDir); err != nil {
		return fmt.Errorf("embedtest: wipe %s: %w", m.name, err)
	}

	lead, err := c.WaitLeader(ctx)
	if err != nil {
		return fmt.Errorf("embedtest: rejoin %s: %w", m.name, err)
	}
	// Talk to the leader only: a remove applied there is visible to the
	// add that follows, which another member might not have applied yet.
	cli, err := c.dial(c.members[lead].ClientURL())
	if err != nil {
		return err
	}
	defer cli.Close()

	list, err := cli.MemberList(ctx)
	if err != nil {
		return fmt.Errorf("embedtest: rejoin %s: member list: %w", m.name, err)
	}
	for _, mm := range list.Members {
		// The old ID, or one a Rejoin that failed half way added.
		if mm.ID == m.ID() || slices.Contains(mm.PeerURLs, m.PeerURL()) {
			if _, err := cli.MemberRemove(ctx, mm.ID); err != nil {
				return fmt.Errorf("embedtest: rejoin %s: remove: %w", m.name, err)
			}
		}
	}
	added, err := cli.MemberAdd(ctx, []string{m.PeerURL()})
	if err != nil {
		return fmt.Errorf("embedtest: rejoin %s: add: %w", m.name, err)
	}

	// The new member learns the cluster from this list; the member just
	// added has no name yet, and names must match our members'.
	byPeer := make(map[string]string, len(c.members))
	for _, mm := range c.members {
		byPeer[mm.PeerURL()] = mm.name
	}
	var initial []string
	for _, mm := range added.Members {
		for _, u := range mm.PeerURLs {
			name, ok := byPeer[u]
			if !ok {
				return fmt.Errorf("embedtest: rejoin %s: unknown member %x at %s", m.name, mm.ID, u)
			}
			initial = append(initial, name+"="+u)
		}
	}
	m.mu.Lock()
	m.initialCluster = strings.Join(initial, ",")
	m.mu.Unlock()

	// The new member checks its list against whichever peer it reaches
	// first; one that has not applied the add yet refuses it ("member
	// count is unequal"). A linearizable member list through a member
	// returns only once that member has applied everything committed
	// before it, the add included.
	for _, mm := range c.members {
		if mm == m || !mm.Running() {
			continue
		}
		if err := memberListVia(ctx, c, mm); err != nil {
			return fmt.Errorf("embedtest: rejoin %s: %s applying the add: %w", m.name, mm.name, err)
		}
	}

	if err := m.launch(embed.ClusterStateFlagExisting); err != nil {
		return err
	}
	return m.waitReady(ctx)
}

// memberListVia makes a linearizable member list request through mm only.
func memberListVia(ctx context.Context, c *Cluster, mm *Member) error {
	cli, err := c.dial(mm.ClientURL())
	if err != nil {
		return err
	}
	defer cli.Close()
	_, err = cli.MemberList(ctx)
	return err
}
