package embedtest

import (
	"time"

	"go.uber.org/zap"
)

// An Option configures a Cluster. Options are applied in order; later ones
// win.
type Option interface{ apply(*config) }

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

type config struct {
	members   int
	logger    *zap.Logger
	fsync     bool
	tick      time.Duration
	election  time.Duration
	timingSet bool
	dir       string
	tls       bool   // WithTLS
	listen    string // WithClientAddr
}

func defaultConfig() config {
	return config{members: 1, logger: zap.NewNop()}
}

// WithMembers sets the number of etcd members (default 1). Use an odd
// number for a cluster that tolerates failures: 3 tolerates one, 5 two.
// Even counts are allowed (they are useful to test quorum loss) but
// tolerate no more failures than the odd count below them.
func WithMembers(n int) Option {
	return optionFunc(func(c *config) { c.members = n })
}

// WithLogger sends the etcd servers' logs to lg, and embedtest's own: the
// leftovers of dead processes that Start removes, at info level. The
// default discards them.
func WithLogger(lg *zap.Logger) Option {
	return optionFunc(func(c *config) { c.logger = lg })
}

// WithFsync turns fsync on or off. It is off by default, which makes
// every write several times faster and is safe for tests, whose data dies
// with the process anyway. Turn it on to measure what a real disk costs.
func WithFsync(on bool) Option {
	return optionFunc(func(c *config) { c.fsync = on })
}

// WithElection sets the raft heartbeat interval and election timeout.
//
// The defaults are 5ms/50ms for a single member, which has no peer to
// miss a heartbeat from and spends most of its start time on its first
// election, and 20ms/200ms for a multi-member cluster (slow enough that a
// loaded 2-core machine running tests under -race does not see spurious
// elections). etcd's minimum lease TTL is 1.5 × election timeout rounded
// up to whole seconds, so both defaults make it 1s instead of the
// production 2s (from etcd's default 100ms/1000ms); etcd silently raises a
// shorter TTL to that minimum.
//
// election must be at least 5 × tick and at most 50s.
func WithElection(tick, election time.Duration) Option {
	return optionFunc(func(c *config) {
		c.tick, c.election, c.timingSet = tick, election, true
	})
}

// WithClientAddr makes the only member serve clients on addr, a
// "host:port" such as "127.0.0.1:2379", instead of a free port of
// 127.0.0.1; for a server others must find, such as `leasekit etcd`.
// It needs a single member. Start fails if the address is taken. An
// address other than loopback serves the network: keep it out of tests.
func WithClientAddr(addr string) Option {
	return optionFunc(func(c *config) { c.listen = addr })
}

// WithDataDir puts the members' data in a new directory inside dir
// instead of the temporary directory. Close removes only what the cluster
// created inside dir, and Start sweeps only the directories that dead
// processes' clusters left there (see the package doc).
func WithDataDir(dir string) Option {
	return optionFunc(func(c *config) { c.dir = dir })
}
