package embedtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"

	"github.com/leasekit/leasekit/internal/errs"
)

// Errors returned by embedtest. Check them with errors.Is.
var (
	// ErrClosed is returned by calls on a Cluster after Close.
	ErrClosed = errors.New("embedtest: cluster closed")
	// ErrInvalidOption is returned by Start for an option value that cannot
	// work, such as zero members, and for a nil Option or logger.
	ErrInvalidOption = errors.New("embedtest: invalid option")
	// ErrMemberStopped is returned when an operation needs a running member.
	ErrMemberStopped = errors.New("embedtest: member is stopped")
	// ErrMemberRunning is returned when an operation needs a stopped member.
	ErrMemberRunning = errors.New("embedtest: member is running")
	// ErrNoMember is returned for a member index out of range.
	ErrNoMember = errors.New("embedtest: no such member")
	// ErrMemberWiped is returned by Restart for a member whose data
	// KillAndWipe dropped: raft forbids it to come back under its old
	// identity with an empty log. Rejoin brings it back as a new member.
	ErrMemberWiped = errors.New("embedtest: member data was wiped; use Rejoin")
)

// maxMembers bounds WithMembers; more members only slow a test down.
const maxMembers = 9

// startAttempts is how often Start picks fresh ports after losing a race
// for one to another process.
const startAttempts = 5

// Cluster is a running etcd cluster inside the current process. Clients
// reach its members on 127.0.0.1 only; the members reach each other over
// Unix sockets (see the package doc). It is safe for concurrent use.
//
// Methods that take a member index return ErrNoMember for one out of
// range, and every method returns ErrClosed after Close.
type Cluster struct {
	cfg     config
	dir     string   // data root, created by Start and removed by Close
	dirLock *os.File // held until dir is removed; see newDataDir
	token   string
	members []*Member
	certs   *certs // WithTLS; nil without
	// closeEnd is closed when the first Close has finished.
	closeEnd chan struct{}

	mu          sync.Mutex
	closed      bool
	ops         sync.WaitGroup // member starts in flight; Close waits for them
	client      *clientv3.Client
	root        *clientv3.Client // logged in as root; set by EnableAuth
	clients     []*clientv3.Client
	closers     []func() error // proxies and the like, closed before members
	partitioned []bool         // by member index; see Partition

	linkMu sync.Mutex // serializes applyLinks
}

// Start starts a cluster and returns once every member serves clients and
// the cluster has a leader. Close it when done; New does that for tests.
func Start(ctx context.Context, opts ...Option) (*Cluster, error) {
	cfg := defaultConfig()
	for _, o := range opts {
		if o == nil {
			return nil, fmt.Errorf("%w: nil Option", ErrInvalidOption)
		}
		o.apply(&cfg)
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("embedtest: start: %w", err)
	}

	c := &Cluster{cfg: cfg, token: randomToken(), closeEnd: make(chan struct{})}
	for _, dir := range sweepDataDirs(cfg.dir) {
		cfg.logger.Info("embedtest: removed the data directory of a process that died before Close", zap.String("dir", dir))
	}
	var err error
	if c.dir, c.dirLock, err = newDataDir(cfg.dir); err != nil {
		return nil, err
	}
	if cfg.tls {
		if c.certs, err = newCerts(filepath.Join(c.dir, "tls")); err != nil {
			c.removeDir()
			return nil, err
		}
	}

	for attempt := 1; ; attempt++ {
		err = c.startAll(ctx)
		if err == nil {
			break
		}
		c.stopAll()
		// A port of our choice is worth trying again; one given is not.
		if !isAddrInUse(err) || attempt == startAttempts || cfg.listen != "" {
			c.removeDir()
			return nil, err
		}
	}

	cli, err := c.newClient(clientv3.Config{})
	if err != nil {
		c.stopAll()
		c.removeDir()
		return nil, err
	}
	c.client = cli
	return c, nil
}

func (cfg *config) validate() error {
	if cfg.members < 1 || cfg.members > maxMembers {
		return fmt.Errorf("%w: %d members; want 1 to %d", ErrInvalidOption, cfg.members, maxMembers)
	}
	if cfg.logger == nil {
		return fmt.Errorf("%w: nil logger", ErrInvalidOption)
	}
	if cfg.listen != "" {
		if cfg.members != 1 {
			return fmt.Errorf("%w: WithClientAddr needs one member, not %d", ErrInvalidOption, cfg.members)
		}
		if _, _, err := net.SplitHostPort(cfg.listen); err != nil {
			return fmt.Errorf("%w: client address %q: %v", ErrInvalidOption, cfg.listen, err)
		}
	}
	if !cfg.timingSet {
		// A lone member cannot miss a heartbeat, and its first election
		// is most of its start time: 5ms/50ms starts in about half the
		// time of 10ms/100ms.
		cfg.tick, cfg.election = 5*time.Millisecond, 50*time.Millisecond
		if cfg.members > 1 {
			cfg.tick, cfg.election = 20*time.Millisecond, 200*time.Millisecond
		}
	}
	if cfg.tick < time.Millisecond || cfg.tick%time.Millisecond != 0 {
		return fmt.Errorf("%w: heartbeat %v; want whole milliseconds >= 1ms", ErrInvalidOption, cfg.tick)
	}
	if cfg.election < 5*cfg.tick || cfg.election > 50*time.Second || cfg.election%time.Millisecond != 0 {
		return fmt.Errorf("%w: election timeout %v; want whole milliseconds from 5 × heartbeat (%v) to 50s",
			ErrInvalidOption, cfg.election, 5*cfg.tick)
	}
	return nil
}

// startAll picks fresh loopback ports for every member and starts them.
func (c *Cluster) startAll(ctx context.Context) error {
	unixPeers := peerSocketsOK(c.cfg.logger)
	perMember := 2
	if unixPeers {
		perMember = 1
	}
	ports, err := freePorts(perMember * c.cfg.members)
	if err != nil {
		return err
	}
	c.members = make([]*Member, c.cfg.members)
	c.partitioned = make([]bool, c.cfg.members)
	var initial []string
	for i := range c.members {
		name := fmt.Sprintf("m%d", i)
		m := &Member{
			cluster:   c,
			index:     i,
			name:      name,
			dataDir:   filepath.Join(c.dir, name),
			clientURL: url.URL{Scheme: c.clientScheme(), Host: fmt.Sprintf("127.0.0.1:%d", ports[perMember*i])},
		}
		if c.cfg.listen != "" {
			m.clientURL.Host = c.cfg.listen
		}
		if unixPeers {
			// etcd takes the host part as a path relative to the working
			// directory. The port is part of the file name; any will do.
			m.peerURL = url.URL{Scheme: "unix", Host: socketName(c.token, name) + ":1"}
		} else {
			m.peerURL = url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", ports[perMember*i+1])}
		}
		c.members[i] = m
		initial = append(initial, name+"="+m.peerURL.String())
	}
	// Members start one after the other. Each new member first asks every
	// peer whether it already joined, allowing each peer a second to
	// answer: a peer that has not started yet refuses the connection at
	// once, and one that has finished starting answers at once, but one
	// caught half-started holds the question for that whole second.
	// Started in parallel, three members took 2.1s instead of 0.15s.
	for _, m := range c.members {
		m.initialCluster = strings.Join(initial, ",")
		// A failed earlier attempt may have left a WAL that names other
		// ports; etcd would trust it over the new initial cluster.
		if err := os.RemoveAll(m.dataDir); err != nil {
			return fmt.Errorf("embedtest: data dir: %w", err)
		}
		if err := m.launch(embed.ClusterStateFlagNew); err != nil {
			return err
		}
	}
	for _, m := range c.members {
		if err := m.waitReady(ctx); err != nil {
			return err
		}
	}
	return nil
}

// stopAll stops every running member without failing. It stops them hard,
// all at once: a graceful stop makes a leader hand leadership to a member
// that is stopping too, and wait up to etcd's request timeout (about 5s)
// for it. Raft stops everywhere before any server closes, so no member
// keeps sending to one that is closing.
func (c *Cluster) stopAll() {
	var stopping []*embed.Etcd
	for _, m := range c.members {
		if m == nil {
			continue
		}
		m.mu.Lock()
		e := m.etcd
		m.etcd = nil
		m.mu.Unlock()
		if e != nil {
			stopping = append(stopping, e)
		}
	}
	var wg sync.WaitGroup
	for _, e := range stopping {
		wg.Go(e.Server.HardStop)
	}
	wg.Wait()
	for _, e := range stopping {
		wg.Go(e.Close)
	}
	wg.Wait()
}

// Endpoints returns the client URLs of all members, including stopped ones.
func (c *Cluster) Endpoints() []string {
	eps := make([]string, len(c.members))
	for i, m := range c.members {
		eps[i] = m.ClientURL()
	}
	return eps
}

// Client returns a client connected to every member. It is shared: do not
// close it; Close does.
func (c *Cluster) Client() *clientv3.Client { return c.client }

// NewClient returns a new client of its own connection, so that it can be
// cut off or closed without touching other clients. cfg.Endpoints defaults
// to every member and cfg.DialTimeout to 5s. Close closes it too, if it
// has not been closed already.
func (c *Cluster) NewClient(cfg ...clientv3.Config) (*clientv3.Client, error) {
	var cc clientv3.Config
	if len(cfg) > 0 {
		cc = cfg[0]
	}
	return c.newClient(cc)
}

func (c *Cluster) newClient(cc clientv3.Config) (*clientv3.Client, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, ErrClosed
	}
	if len(cc.Endpoints) == 0 {
		cc.Endpoints = c.Endpoints()
	}
	if cc.DialTimeout == 0 {
		cc.DialTimeout = 5 * time.Second
	}
	if cc.Logger == nil {
		cc.Logger = zap.NewNop()
	}
	if cc.TLS == nil {
		cc.TLS = c.clientTLS()
	}
	cli, err := clientv3.New(cc)
	if err != nil {
		return nil, fmt.Errorf("embedtest: new client: %w", err)
	}
	c.clients = append(c.clients, cli)
	return cli, nil
}

// dial returns a client of endpoints that the cluster does not track, for
// a short internal use; the caller closes it. Once EnableAuth has run, it
// logs in as root: changing the membership needs it.
func (c *Cluster) dial(endpoints ...string) (*clientv3.Client, error) {
	cfg := clientv3.Config{
		Endpoints:   endpoints,
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
		TLS:         c.clientTLS(),
	}
	c.mu.Lock()
	if c.root != nil {
		cfg.Username, cfg.Password = "root", RootPassword
	}
	c.mu.Unlock()
	cli, err := clientv3.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("embedtest: new client: %w", err)
	}
	return cli, nil
}

// onClose registers f to run when the cluster closes, before the members
// stop. It reports ErrClosed if the cluster is already closed.
func (c *Cluster) onClose(f func() error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClosed
	}
	c.closers = append(c.closers, f)
	return nil
}

// Members returns the number of members.
func (c *Cluster) Members() int { return len(c.members) }

// Member returns member i, counting from 0. It panics if i is out of range,
// as indexing a slice does; the Cluster methods that take an index return
// ErrNoMember instead.
func (c *Cluster) Member(i int) *Member { return c.members[i] }

// member returns member i or ErrNoMember.
func (c *Cluster) member(i int) (*Member, error) {
	if i < 0 || i >= len(c.members) {
		return nil, fmt.Errorf("%w: index %d; the cluster has %d", ErrNoMember, i, len(c.members))
	}
	return c.members[i], nil
}

// Close closes every client made by the cluster, stops every member and
// removes the data.
//
// Close is idempotent: a second call, or one made while the first is in
// progress, waits for the first to finish and returns nil.
func (c *Cluster) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		<-c.closeEnd
		return nil
	}
	c.closed = true
	defer close(c.closeEnd)
	closers, clients := c.closers, c.clients
	c.mu.Unlock()
	// A Restart that passed its check before Close must not start a
	// member after stopAll; wait for it to finish launching.
	c.ops.Wait()

	var failed []error
	for _, cli := range clients {
		// A client the test closed itself returns context.Canceled here.
		if err := cli.Close(); err != nil && !errors.Is(err, context.Canceled) {
			failed = append(failed, err)
		}
	}
	for _, f := range closers {
		failed = append(failed, f())
	}
	c.stopAll()
	failed = append(failed, c.removeDir())
	return errs.Join(failed...)
}

// removeDir removes the data root, then drops its lock.
func (c *Cluster) removeDir() error {
	err := os.RemoveAll(c.dir)
	if c.dirLock != nil {
		c.dirLock.Close()
	}
	return err
}

// freePorts asks the kernel for n distinct free ports on 127.0.0.1. Another
// process can take one before etcd binds it; Start then tries again.
func freePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("embedtest: pick port: %w", err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// peerSocketsOK reports whether members can put their peer sockets in the
// working directory, and sweeps the sockets dead processes left there.
//
// Members talk raft to each other over Unix sockets there, as etcd's own
// integration tests do, rather than over TCP. Over TCP, etcd's peer
// listener can keep a finished HTTP request's connection busy for its 5s
// read timeout, and the other member's HTTP client keeps it in its idle
// pool: closing a member then waits a second for it, and goroutines stay
// behind for up to 5s after Close, which makes goleak checks flaky. A Unix
// socket client drops idle connections at once, so neither happens.
func peerSocketsOK(lg *zap.Logger) bool {
	f, err := os.CreateTemp(".", socketPrefix+"probe-*")
	if err != nil {
		return false
	}
	f.Close()
	if os.Remove(f.Name()) != nil {
		return false
	}
	for _, name := range sweepSockets() {
		lg.Info("embedtest: removed a peer socket of a process that died before Close", zap.String("socket", name))
	}
	return true
}

func isAddrInUse(err error) bool {
	return errors.Is(err, syscall.EADDRINUSE) || strings.Contains(err.Error(), "address already in use")
}

func randomToken() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func (c *Cluster) checkOpen() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClosed
	}
	return nil
}

// begin registers an operation that may start a member, so that Close
// waits for it before stopping members. end marks it done.
func (c *Cluster) begin() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClosed
	}
	c.ops.Add(1)
	return nil
}

func (c *Cluster) end() { c.ops.Done() }
