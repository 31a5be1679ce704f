package compat

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/leasekit/leasekit/etcdclient"
)

// etcdEnv names the etcd server binary the suite runs.
const etcdEnv = "LEASEKIT_COMPAT_ETCD"

// member is one etcd server process.
type member struct {
	name      string
	clientURL string
	peerURL   string
	dataDir   string
	logPath   string
	cmd       *exec.Cmd
	exited    chan struct{} // closed when cmd has been waited for
}

// cluster is three etcd server processes on 127.0.0.1.
type cluster struct {
	t       testing.TB
	bin     string
	initial string // --initial-cluster
	members []*member
}

// etcdBinary returns the server binary from the environment, or skips.
func etcdBinary(t testing.TB) string {
	bin := os.Getenv(etcdEnv)
	if bin == "" {
		t.Skipf("%s is not set: run make compat from the repository root", etcdEnv)
	}
	return bin
}

// startCluster starts three members and waits until each serves a
// linearizable read. The members are killed when the test ends.
func startCluster(t testing.TB, bin string) *cluster {
	t.Helper()
	var lastErr error
	// Ports are picked free and then released, so another process can
	// take one before etcd binds it; try again with new ones if so.
	for range 3 {
		c, err := tryStart(t, bin)
		if err == nil {
			return c
		}
		lastErr = err
		t.Logf("start: %v; retrying with new ports", err)
	}
	t.Fatalf("start etcd: %v", lastErr)
	return nil
}

func tryStart(t testing.TB, bin string) (*cluster, error) {
	ports, err := freePorts(6)
	if err != nil {
		return nil, err
	}
	dir := t.TempDir()
	c := &cluster{t: t, bin: bin}
	var initial []string
	for i := range 3 {
		m := &member{
			name:      fmt.Sprintf("m%d", i),
			clientURL: fmt.Sprintf("http://127.0.0.1:%d", ports[2*i]),
			peerURL:   fmt.Sprintf("http://127.0.0.1:%d", ports[2*i+1]),
		}
		m.dataDir = filepath.Join(dir, m.name)
		m.logPath = filepath.Join(logDir(t, dir), m.name+".log")
		c.members = append(c.members, m)
		initial = append(initial, m.name+"="+m.peerURL)
	}
	c.initial = strings.Join(initial, ",")
	t.Cleanup(c.killAll)
	for i := range c.members {
		if err := c.start(i); err != nil {
			c.killAll()
			return nil, err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for i := range c.members {
		if err := c.waitServing(ctx, i); err != nil {
			c.killAll()
			return nil, err
		}
	}
	return c, nil
}

// logDir is where member logs go: LEASEKIT_COMPAT_KEEP_LOGS if set, else
// the test's temporary directory.
func logDir(t testing.TB, tmp string) string {
	if d := os.Getenv("LEASEKIT_COMPAT_KEEP_LOGS"); d != "" {
		d = filepath.Join(d, strings.ReplaceAll(t.Name(), "/", "_"))
		if err := os.MkdirAll(d, 0o755); err == nil {
			return d
		}
	}
	return tmp
}

func freePorts(n int) ([]int, error) {
	var ports []int
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// start starts member i's process with its data directory, which on a
// restart holds its state: etcd then ignores the --initial-* flags.
// Timing and fsync are etcd's defaults.
func (c *cluster) start(i int) error {
	m := c.members[i]
	logf, err := os.OpenFile(m.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close() // the child has its own descriptor
	cmd := exec.Command(c.bin,
		"--name", m.name,
		"--data-dir", m.dataDir,
		"--listen-client-urls", m.clientURL,
		"--advertise-client-urls", m.clientURL,
		"--listen-peer-urls", m.peerURL,
		"--initial-advertise-peer-urls", m.peerURL,
		"--initial-cluster", c.initial,
		"--initial-cluster-state", "new",
		"--initial-cluster-token", "leasekit-compat",
	)
	cmd.Stdout = logf
	cmd.Stderr = logf
	// The member dies with the test process, even a killed one.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", m.name, err)
	}
	m.cmd = cmd
	m.exited = make(chan struct{})
	go func() {
		cmd.Wait()
		close(m.exited)
	}()
	return nil
}

// kill sends SIGKILL to member i, a crash, and waits for it to exit.
func (c *cluster) kill(i int) {
	m := c.members[i]
	if m.cmd == nil {
		return
	}
	m.cmd.Process.Signal(syscall.SIGKILL)
	<-m.exited
	m.cmd = nil
}

func (c *cluster) killAll() {
	for i := range c.members {
		c.kill(i)
	}
}

// restart starts a killed member again on its data and waits until it
// serves a linearizable read.
func (c *cluster) restart(ctx context.Context, i int) error {
	if err := c.start(i); err != nil {
		return err
	}
	return c.waitServing(ctx, i)
}

// waitServing waits until member i answers a linearizable read, which
// needs a leader and the member caught up with it.
func (c *cluster) waitServing(ctx context.Context, i int) error {
	m := c.members[i]
	cli, err := clientv3.New(etcdclient.Config(m.clientURL))
	if err != nil {
		return err
	}
	defer cli.Close()
	for {
		select {
		case <-m.exited:
			return fmt.Errorf("%s exited; log %s:\n%s", m.name, m.logPath, tail(m.logPath))
		default:
		}
		// The client waits for a connection; an attempt ends with an
		// error while the member has no leader yet.
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := cli.Get(actx, "compat-probe")
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%s not serving: %w", m.name, errors.Join(err, ctx.Err()))
		}
		select {
		case <-time.After(100 * time.Millisecond): // between attempts, not a wait for the condition
		case <-ctx.Done():
		}
	}
}

// leader returns the index of the member that leads, as the live
// members report it.
func (c *cluster) leader(ctx context.Context, cli *clientv3.Client) (int, error) {
	ids := map[uint64]int{}
	var lead uint64
	for i, m := range c.members {
		if m.cmd == nil {
			continue
		}
		st, err := cli.Status(ctx, m.clientURL)
		if err != nil {
			continue
		}
		ids[st.Header.MemberId] = i
		if st.Leader != 0 {
			lead = st.Leader
		}
	}
	if i, ok := ids[lead]; ok && lead != 0 {
		return i, nil
	}
	return -1, errors.New("no live member reports a live leader")
}

// endpoints returns every member's client URL.
func (c *cluster) endpoints() []string {
	var eps []string
	for _, m := range c.members {
		eps = append(eps, m.clientURL)
	}
	return eps
}

// client returns a client of the given members (all if none), closed when
// the test ends.
func (c *cluster) client(t testing.TB, members ...int) *clientv3.Client {
	t.Helper()
	eps := c.endpoints()
	if len(members) > 0 {
		eps = nil
		for _, i := range members {
			eps = append(eps, c.members[i].clientURL)
		}
	}
	cli, err := clientv3.New(etcdclient.Config(eps...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// tail returns the end of a log file, for a failure message.
func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}
