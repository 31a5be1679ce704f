//go:build unix

package main

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/leasekit/leasekit/internal/testkit"
)

// event is what a child reported, or its end.
type event struct {
	what  string // "start", "signal" or "exit"
	tag   string
	pid   int
	token int64
	key   string
	name  string
	line  string // what a "read" child read
	sig   syscall.Signal
	at    time.Time // the child's clock for start and signal; the test's for exit
}

// children collects the reports of the children the tests run under
// leasekit, from a Unix socket they connect to.
type children struct {
	t    *testing.T
	path string
	ln   *net.UnixListener
	ch   chan event
	wg   sync.WaitGroup

	mu    sync.Mutex
	conns map[string]net.Conn // by tag
	all   []net.Conn

	got  []event // received, in order
	used []bool  // got[i] was returned by await
}

func newChildren(t *testing.T) *children {
	dir, err := os.MkdirTemp("", "lk") // short: socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "s")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	c := &children{t: t, path: path, ln: ln, ch: make(chan event, 64), conns: map[string]net.Conn{}}
	c.wg.Add(1)
	go c.accept()
	t.Cleanup(c.close)
	return c
}

func (c *children) accept() {
	defer c.wg.Done()
	for {
		conn, err := c.ln.Accept()
		if err != nil {
			return
		}
		c.mu.Lock()
		c.all = append(c.all, conn)
		c.mu.Unlock()
		c.wg.Add(1)
		go c.read(conn)
	}
}

func (c *children) read(conn net.Conn) {
	defer c.wg.Done()
	sc := bufio.NewScanner(conn)
	tag := ""
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 {
			continue
		}
		ev := event{what: f[0], tag: f[1]}
		switch {
		case ev.what == "start" && len(f) >= 6:
			tag = ev.tag
			ev.pid, _ = strconv.Atoi(f[2])
			ev.token, _ = strconv.ParseInt(f[3], 10, 64)
			ev.key = f[4]
			ev.at = nanos(f[5])
			if len(f) > 6 {
				ev.name = f[6]
			}
			c.mu.Lock()
			c.conns[tag] = conn
			c.mu.Unlock()
		case ev.what == "read":
			ev.line = strings.Join(f[2:], " ")
		case ev.what == "signal" && len(f) == 4:
			n, _ := strconv.Atoi(f[2])
			ev.sig = syscall.Signal(n)
			ev.at = nanos(f[3])
		}
		c.ch <- ev
	}
	if tag != "" {
		c.ch <- event{what: "exit", tag: tag, at: time.Now()}
	}
}

func nanos(s string) time.Time {
	n, _ := strconv.ParseInt(s, 10, 64)
	return time.Unix(0, n)
}

func (c *children) close() {
	c.ln.Close()
	c.mu.Lock()
	for _, conn := range c.all {
		conn.Close()
	}
	c.mu.Unlock()
	// Readers may be blocked sending: drain until they are done.
	done := make(chan struct{})
	go func() { c.wg.Wait(); close(done) }()
	for {
		select {
		case <-c.ch:
		case <-done:
			return
		}
	}
}

// await returns the first event not returned before that is what of
// tag ("" for any tag), waiting for it.
func (c *children) await(what, tag string) event {
	c.t.Helper()
	timer := time.NewTimer(testkit.Timeout)
	defer timer.Stop()
	for {
		for i, ev := range c.got {
			if !c.used[i] && ev.what == what && (tag == "" || ev.tag == tag) {
				c.used[i] = true
				return ev
			}
		}
		select {
		case ev := <-c.ch:
			c.got = append(c.got, ev)
			c.used = append(c.used, false)
		case <-timer.C:
			c.t.Fatalf("no %q event of %q within %v; got %+v", what, tag, testkit.Timeout, c.got)
		}
	}
}

// seen reports whether an event what of tag has arrived, without
// waiting.
func (c *children) seen(what, tag string) bool {
	for {
		select {
		case ev := <-c.ch:
			c.got = append(c.got, ev)
			c.used = append(c.used, false)
			continue
		default:
		}
		break
	}
	for _, ev := range c.got {
		if ev.what == what && ev.tag == tag {
			return true
		}
	}
	return false
}

// tell asks the child tag to exit with status code.
func (c *children) tell(tag string, code int) {
	c.t.Helper()
	c.mu.Lock()
	conn := c.conns[tag]
	c.mu.Unlock()
	if conn == nil {
		c.t.Fatalf("no child %q", tag)
	}
	if _, err := conn.Write([]byte("exit " + strconv.Itoa(code) + "\n")); err != nil {
		c.t.Fatalf("tell %s: %v", tag, err)
	}
}

// childArgs returns the command line of a child for leasekit to run.
func childArgs(tag string, action ...string) []string {
	self, err := os.Executable()
	if err != nil {
		panic(err)
	}
	return append([]string{self, tag}, action...)
}

// proc is a leasekit process.
type proc struct {
	cmd    *exec.Cmd
	stderr *os.File
	done   chan struct{}
	code   int
}

// leasekit starts leasekit with args, its children reporting to c (which
// may be nil). Its stderr goes to a file, read by output.
func leasekit(t *testing.T, c *children, args ...string) *proc {
	t.Helper()
	return leasekitEnv(t, c, nil, args...)
}

// leasekitEnv is leasekit with env added to its environment.
func leasekitEnv(t *testing.T, c *children, env []string, args ...string) *proc {
	t.Helper()
	stderr, err := os.CreateTemp(t.TempDir(), "stderr")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(leasekitBin, args...)
	cmd.Env = append(testEnv(c), env...)
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, stderr: stderr, done: make(chan struct{})}
	go func() {
		cmd.Wait()
		p.code = exitCode(cmd.ProcessState)
		close(p.done)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-p.done
		stderr.Close()
	})
	return p
}

// leasekitLines starts leasekit with args and returns it with a scanner
// of the lines it writes to the pipe that pipe makes
// ((*exec.Cmd).StdoutPipe or StderrPipe). It is killed when the test ends.
func leasekitLines(t *testing.T, pipe func(*exec.Cmd) (io.ReadCloser, error), args ...string) (*exec.Cmd, *bufio.Scanner) {
	t.Helper()
	cmd := exec.Command(leasekitBin, args...)
	cmd.Env = testEnv(nil)
	out, err := pipe(cmd)
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd, bufio.NewScanner(out)
}

// testEnv is the environment of leasekit in tests: without the caller's
// ETCDCTL_ settings, with the child mode's.
func testEnv(c *children) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "ETCDCTL_") {
			env = append(env, kv)
		}
	}
	env = append(env, childEnv+"=1")
	if c != nil {
		env = append(env, sockEnv+"="+c.path)
	}
	return env
}

func exitCode(st *os.ProcessState) int {
	if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return st.ExitCode()
}

// wait waits for leasekit to exit and returns its status.
func (p *proc) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-p.done:
		return p.code
	case <-time.After(testkit.Timeout):
		t.Fatalf("leasekit %q did not exit within %v; stderr: %s", p.cmd.Args[1:], testkit.Timeout, p.output())
		return -1
	}
}

// exits waits for leasekit to exit and fails the test unless its status
// is want; what names it in the failure.
func (p *proc) exits(t *testing.T, what string, want int) {
	t.Helper()
	if code := p.wait(t); code != want {
		t.Fatalf("%s exited %d, want %d; stderr %q", what, code, want, p.output())
	}
}

// output returns what leasekit wrote on stderr so far.
func (p *proc) output() string {
	b, _ := os.ReadFile(p.stderr.Name())
	return string(b)
}

// signal sends sig to leasekit.
func (p *proc) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Fatal(err)
	}
}

// runLeasekit runs leasekit to its end and returns its status, stdout
// and stderr.
func runLeasekit(t *testing.T, c *children, args ...string) (int, string, string) {
	t.Helper()
	return runLeasekitEnv(t, c, nil, args...)
}

// runLeasekitEnv is runLeasekit with env added to leasekit's environment.
func runLeasekitEnv(t *testing.T, c *children, env []string, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testkit.Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, leasekitBin, args...)
	cmd.Env = append(testEnv(c), env...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("leasekit %q: %v", args, err)
	}
	return exitCode(cmd.ProcessState), out.String(), errb.String()
}

// cmdline joins leasekit's arguments and a child's command line.
func cmdline(args []string, child []string) []string {
	return append(append(append([]string{}, args...), "--"), child...)
}

// ep is the flag that points leasekit at endpoints.
func ep(endpoints ...string) string { return "--endpoints=" + strings.Join(endpoints, ",") }

// clientPrefix counts the keys under a prefix.
func clientPrefix() []clientv3.OpOption {
	return []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithCountOnly()}
}
