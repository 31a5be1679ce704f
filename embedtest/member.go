package embedtest

import (
	"context"
	"fmt"
	"net/url"
	"sync"

	"go.etcd.io/etcd/server/v3/embed"
)

// Member is one etcd server of a Cluster. Its ports and data directory stay
// the same across Stop and Restart. It is safe for concurrent use.
type Member struct {
	cluster        *Cluster
	index          int
	name           string
	dataDir        string
	clientURL      url.URL
	peerURL        url.URL
	initialCluster string

	mu   sync.Mutex
	etcd *embed.Etcd // nil while stopped
}

// Name returns the member's etcd name ("m0", "m1", ...).
func (m *Member) Name() string { return m.name }

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

func (m *Member) embedConfig(state string) *embed.Config {
	c := m.cluster.cfg
	ec := embed.NewConfig()
	ec.Name = m.name
	ec.Dir = m.dataDir
	ec.ListenClientUrls = []url.URL{m.clientURL}
	ec.AdvertiseClientUrls = []url.URL{m.clientURL}
	ec.ListenPeerUrls = []url.URL{m.peerURL}
	ec.AdvertisePeerUrls = []url.URL{m.peerURL}
	ec.InitialCluster = m.initialCluster
	ec.InitialClusterToken = "embedtest-" + m.cluster.token
	ec.ClusterState = state
	ec.TickMs = uint(c.tick.Milliseconds())
	ec.ElectionMs = uint(c.election.Milliseconds())
	ec.UnsafeNoFsync = !c.fsync
	ec.EnableGRPCGateway = false
	ec.ZapLoggerBuilder = embed.NewZapLoggerBuilder(c.logger.Named(m.name))
	return ec
}

// launch starts the server without waiting for it to be ready.
func (m *Member) launch(state string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.etcd != nil {
		return fmt.Errorf("%w: %s", ErrMemberRunning, m.name)
	}
	e, err := embed.StartEtcd(m.embedConfig(state))
	if err != nil {
		return fmt.Errorf("embedtest: start %s: %w", m.name, err)
	}
	m.etcd = e
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
	case err := <-e.Err():
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

// Stop stops the member gracefully, keeping its data: a leader first hands
// leadership to another member. Restart brings it back.
func (m *Member) Stop() error {
	if !m.shutdown(false) {
		return fmt.Errorf("%w: %s", ErrMemberStopped, m.name)
	}
	return nil
}

// Kill stops the member abruptly, keeping its data: a leader does not hand
// leadership over, so the others must time out and elect a new one, as
// after a crash. Restart brings it back.
func (m *Member) Kill() error {
	if !m.shutdown(true) {
		return fmt.Errorf("%w: %s", ErrMemberStopped, m.name)
	}
	return nil
}

// Restart starts a stopped member again on the same ports and data and
// waits until it serves clients.
func (m *Member) Restart(ctx context.Context) error {
	if err := m.cluster.checkOpen(); err != nil {
		return err
	}
	if err := m.launch(embed.ClusterStateFlagExisting); err != nil {
		return err
	}
	return m.waitReady(ctx)
}
