//go:build unix

package main

import (
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"github.com/leasekit/leasekit/embedtest"
	"github.com/leasekit/leasekit/internal/testkit"
)

// TestElectFailover runs two `leasekit elect`; the leader's leasekit is
// killed with SIGKILL: its command dies with it (the parent-death
// signal), and the other's command starts once the lease expires. The
// new leader's command runs again after it exits (no --once), and a
// SIGTERM to its leasekit stops both.
func TestElectFailover(t *testing.T) {
	t.Parallel()
	c := embedtest.New(t)
	kids := newChildren(t)
	args := func(value string) []string {
		return []string{"elect", ep(c.Endpoints()...), "--ttl=2s", "--value=" + value, "job"}
	}
	a := leasekit(t, kids, cmdline(args("A"), childArgs("a", "hold"))...)
	first := kids.await("start", "a")
	b := leasekit(t, kids, cmdline(args("B"), childArgs("b", "hold"))...)
	testkit.AwaitKeys(t, c.Client(), "/leasekit/election/job/", 2)
	leaderIs(t, c, "job", fmt.Sprintf("A (term %d)", first.token))

	a.signal(t, syscall.SIGKILL)
	gone := kids.await("exit", "a")
	second := kids.await("start", "b")
	if !gone.at.Before(second.at) || second.token <= first.token || !strings.HasPrefix(second.key, "/leasekit/election/job/") {
		t.Fatalf("A's command gone at %v, B's started at %v with %+v", gone.at, second.at, second)
	}
	a.exits(t, "A", 128+int(syscall.SIGKILL))
	leaderIs(t, c, "job", fmt.Sprintf("B (term %d)", second.token))

	// Without --once, B runs its command again after it exits.
	kids.tell("b", 0)
	kids.await("exit", "b")
	again := kids.await("start", "b")
	if again.token <= second.token {
		t.Fatalf("B's second term %d after %d", again.token, second.token)
	}
	b.signal(t, syscall.SIGTERM)
	if ev := kids.await("signal", "b"); ev.sig != syscall.SIGTERM {
		t.Fatalf("B's command got %v", ev.sig)
	}
	b.exits(t, "B", 128+int(syscall.SIGTERM))
	code, out, _ := runLeasekit(t, nil, "leader", ep(c.Endpoints()...), "job")
	if code != exitNone || out != "no leader\n" {
		t.Fatalf("leader after both left: status %d, %q", code, out)
	}
}

func leaderIs(t *testing.T, c *embedtest.Cluster, name, want string) {
	t.Helper()
	code, out, stderr := runLeasekit(t, nil, "leader", ep(c.Endpoints()...), name)
	if code != 0 || out != want+"\n" {
		t.Fatalf("leader: status %d, %q, want %q; stderr %q", code, out, want, stderr)
	}
}

// TestElectOnceAndLeaderWatch follows an election with `leader --watch`
// while `elect --once` leads, exits with its command's status and hands
// over.
func TestElectOnceAndLeaderWatch(t *testing.T) {
	t.Parallel()
	c := embedtest.New(t)
	kids := newChildren(t)
	watch, lines := leasekitLines(t, (*exec.Cmd).StdoutPipe, "leader", ep(c.Endpoints()...), "--watch", "w")
	next := func(want string) {
		t.Helper()
		if !lines.Scan() || lines.Text() != want {
			t.Fatalf("leader --watch printed %q (%v), want %q", lines.Text(), lines.Err(), want)
		}
	}
	next("no leader")

	once := leasekit(t, kids, cmdline([]string{"elect", ep(c.Endpoints()...), "--once", "--value=X", "w"}, childArgs("x", "hold"))...)
	ev := kids.await("start", "x")
	next(fmt.Sprintf("X (term %d)", ev.token))
	kids.tell("x", 7)
	once.exits(t, "elect --once", 7)
	next("no leader")

	if err := watch.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := watch.Wait(); err != nil {
		t.Fatalf("leader --watch after SIGTERM: %v", err)
	}
}
