//go:build unix

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/leasekit/leasekit/embedtest"
	"github.com/leasekit/leasekit/internal/testkit"
)

// TestLockExclusive runs three `leasekit lock` of one name at once: their
// commands run one at a time (each holds a file exclusively), with
// increasing tokens, and each leasekit exits with its command's status.
func TestLockExclusive(t *testing.T) {
	t.Parallel()
	c := embedtest.New(t)
	kids := newChildren(t)
	excl := []string{exclEnv + "=" + filepath.Join(t.TempDir(), "held")}
	const n = 3
	procs := map[string]*proc{}
	for i := range n {
		tag := fmt.Sprintf("w%d", i)
		procs[tag] = leasekitEnv(t, kids, excl, cmdline([]string{"lock", ep(c.Endpoints()...), "excl"}, childArgs(tag, "hold"))...)
	}
	var last int64
	for i := range n {
		ev := kids.await("start", "")
		if kids.seen("overlap", ev.tag) {
			t.Fatalf("%s started while another command held the lock", ev.tag)
		}
		if ev.token <= last || !strings.HasPrefix(ev.key, "/leasekit/lock/excl/") || ev.name != "excl" {
			t.Fatalf("start %+v after token %d", ev, last)
		}
		last = ev.token
		kids.tell(ev.tag, i) // each exits with its own status
		kids.await("exit", ev.tag)
		if code := procs[ev.tag].wait(t); code != i {
			t.Fatalf("leasekit of %s exited %d, want its command's %d; stderr %q", ev.tag, code, i, procs[ev.tag].output())
		}
	}
}

// TestLockTryAndTimeout: with the lock held, --try and --timeout exit 75
// without running anything and leave no key behind; on a free lock
// --try runs the command.
func TestLockTryAndTimeout(t *testing.T) {
	t.Parallel()
	c := embedtest.New(t)
	kids := newChildren(t)
	holder := leasekit(t, kids, cmdline([]string{"lock", ep(c.Endpoints()...), "busy"}, childArgs("holder", "hold"))...)
	kids.await("start", "holder")

	code, _, stderr := runLeasekit(t, kids, cmdline([]string{"lock", ep(c.Endpoints()...), "--try", "busy"}, childArgs("try", "exit", "0"))...)
	if code != exitNotTaken || !strings.Contains(stderr, "taken") {
		t.Fatalf("--try on a held lock: status %d, stderr %q", code, stderr)
	}
	code, _, stderr = runLeasekit(t, kids, cmdline([]string{"lock", ep(c.Endpoints()...), "--timeout=300ms", "busy"}, childArgs("timeout", "exit", "0"))...)
	if code != exitNotTaken || !strings.Contains(stderr, "--timeout") {
		t.Fatalf("--timeout on a held lock: status %d, stderr %q", code, stderr)
	}
	resp, err := c.Client().Get(t.Context(), "/leasekit/lock/busy/", clientPrefix()...)
	if err != nil || resp.Count != 1 {
		t.Fatalf("keys of busy: %v, %v; want the holder's alone", resp, err)
	}
	kids.tell("holder", 0)
	holder.exits(t, "holder", 0)
	code, _, stderr = runLeasekit(t, kids, cmdline([]string{"lock", ep(c.Endpoints()...), "--try", "busy"}, childArgs("free", "exit", "7"))...)
	if code != 7 {
		t.Fatalf("--try on a free lock: status %d, stderr %q", code, stderr)
	}
	kids.await("start", "free")
	if kids.seen("start", "try") || kids.seen("start", "timeout") {
		t.Fatal("a command ran although the lock was not acquired")
	}
}

// TestLockExitStatus: the command's status passes through, a signal's
// is 128+n, and a command that cannot run gets 127 or 126, as in a shell.
func TestLockExitStatus(t *testing.T) {
	t.Parallel()
	c := embedtest.New(t)
	kids := newChildren(t)
	for _, tc := range []struct {
		name string
		argv []string
		want int
	}{
		{"zero", childArgs("zero", "exit", "0"), 0},
		{"three", childArgs("three", "exit", "3"), 3},
		{"SIGKILL", childArgs("kill", "raise", fmt.Sprint(int(syscall.SIGKILL))), 128 + int(syscall.SIGKILL)},
		{"not found", []string{"leasekit-no-such-command"}, exitNotFound},
		{"not executable", []string{"/dev/null"}, exitNotExec},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := runLeasekit(t, kids, cmdline([]string{"lock", ep(c.Endpoints()...), "status"}, tc.argv)...)
			if code != tc.want {
				t.Fatalf("status %d, want %d; stderr %q", code, tc.want, stderr)
			}
		})
	}
	// Nothing is left behind: the lock is free.
	code, _, _ := runLeasekit(t, kids, cmdline([]string{"lock", ep(c.Endpoints()...), "--try", "status"}, childArgs("after", "exit", "0"))...)
	if code != 0 {
		t.Fatalf("--try after the runs: status %d", code)
	}
}

// TestLockSignalsForwarded sends SIGINT, SIGTERM and SIGHUP to a holding
// leasekit: the command gets each, leasekit exits with its status, and
// the lock is released at once: a waiter whose --timeout is shorter than
// the TTL gets it.
func TestLockSignalsForwarded(t *testing.T) {
	t.Parallel()
	c := embedtest.New(t)
	kids := newChildren(t)
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP} {
		t.Run(sig.String(), func(t *testing.T) {
			name := "sig-" + fmt.Sprint(int(sig))
			holderTag, nextTag := name+"-holder", name+"-next"
			holder := leasekit(t, kids, cmdline([]string{"lock", ep(c.Endpoints()...), "--ttl=30s", name}, childArgs(holderTag, "hold"))...)
			kids.await("start", holderTag)
			next := leasekit(t, kids, cmdline([]string{"lock", ep(c.Endpoints()...), "--timeout=20s", name}, childArgs(nextTag, "exit", "0"))...)
			testkit.AwaitKeys(t, c.Client(), "/leasekit/lock/"+name+"/", 2)

			holder.signal(t, sig)
			if ev := kids.await("signal", holderTag); ev.sig != sig {
				t.Fatalf("the command got %v, want %v", ev.sig, sig)
			}
			holder.exits(t, "holder", 128+int(sig))
			kids.await("start", nextTag)
			next.exits(t, "next", 0)
		})
	}
}

// TestLockSignalWhileWaiting: a signal to a waiting leasekit ends the
// wait with 128+n, runs nothing and leaves no key.
func TestLockSignalWhileWaiting(t *testing.T) {
	t.Parallel()
	c := embedtest.New(t)
	kids := newChildren(t)
	holder := leasekit(t, kids, cmdline([]string{"lock", ep(c.Endpoints()...), "wait"}, childArgs("holder", "hold"))...)
	kids.await("start", "holder")
	waiter := leasekit(t, kids, cmdline([]string{"lock", ep(c.Endpoints()...), "wait"}, childArgs("waiter", "exit", "0"))...)
	testkit.AwaitKeys(t, c.Client(), "/leasekit/lock/wait/", 2)
	waiter.signal(t, syscall.SIGINT)
	waiter.exits(t, "waiter", 128+int(syscall.SIGINT))
	testkit.AwaitKeys(t, c.Client(), "/leasekit/lock/wait/", 1)
	kids.tell("holder", 0)
	holder.exits(t, "holder", 0)
	if kids.seen("start", "waiter") {
		t.Fatal("the waiter's command ran")
	}
}

// TestLockCutOffHolderStopsFirst cuts a holding leasekit off from etcd:
// its command gets SIGTERM before the next `leasekit lock` can start its
// own, and leasekit exits 70 naming the loss. It logs how long after the
// cut each happened; LEASEKIT_TEST_CUT_TTL sets the TTL (2s by default)
// to measure others:
//
//	LEASEKIT_TEST_CUT_TTL=10s go test -run TestLockCutOffHolderStopsFirst -v ./cmd/leasekit
func TestLockCutOffHolderStopsFirst(t *testing.T) {
	t.Parallel()
	// 2s, not the 1s minimum: keepalives on a loaded machine under -race
	// can be late enough to make a 1s lease look lost before the cut.
	ttl := 2 * time.Second
	if v := os.Getenv("LEASEKIT_TEST_CUT_TTL"); v != "" {
		var err error
		if ttl, err = time.ParseDuration(v); err != nil {
			t.Fatalf("LEASEKIT_TEST_CUT_TTL: %v", err)
		}
	}
	c := embedtest.New(t)
	kids := newChildren(t)
	p, err := c.NewProxy(0)
	if err != nil {
		t.Fatal(err)
	}
	holder := leasekit(t, kids, cmdline([]string{"lock", ep(p.Endpoint()), "--ttl=" + ttl.String(), "cut"}, childArgs("holder", "hold"))...)
	first := kids.await("start", "holder")
	next := leasekit(t, kids, cmdline([]string{"lock", ep(c.Endpoints()...), "--ttl=" + ttl.String(), "cut"}, childArgs("next", "hold"))...)
	testkit.AwaitKeys(t, c.Client(), "/leasekit/lock/cut/", 2)

	cut := time.Now()
	p.Cut()
	term := kids.await("signal", "holder")
	second := kids.await("start", "next")
	if term.sig != syscall.SIGTERM {
		t.Fatalf("the holder's command got %v, want SIGTERM", term.sig)
	}
	if !term.at.Before(second.at) {
		t.Fatalf("the next command started %v before the holder's got SIGTERM", term.at.Sub(second.at))
	}
	if second.token <= first.token {
		t.Fatalf("tokens %d then %d", first.token, second.token)
	}
	t.Logf("TTL %v: the cut-off holder's command got SIGTERM %v after the cut; the next holder's command started %v after the cut (%v later)",
		ttl, term.at.Sub(cut).Round(time.Millisecond), second.at.Sub(cut).Round(time.Millisecond), second.at.Sub(term.at).Round(time.Millisecond))
	if code := holder.wait(t); code != exitLost || !strings.Contains(holder.output(), "lost") {
		t.Fatalf("holder exited %d, want %d; stderr %q", code, exitLost, holder.output())
	}
	kids.tell("next", 0)
	next.exits(t, "next", 0)
}

// TestUnlockForceStuckHolder breaks the lock of a leasekit stopped with
// SIGSTOP: the waiter runs at once (its --timeout is shorter than the
// TTL); when the stuck leasekit resumes, its command gets SIGTERM, then
// SIGKILL after --kill-after since it ignores SIGTERM, and leasekit
// exits 70.
func TestUnlockForceStuckHolder(t *testing.T) {
	t.Parallel()
	c := embedtest.New(t)
	kids := newChildren(t)
	stuck := leasekit(t, kids, cmdline([]string{"lock", ep(c.Endpoints()...), "--ttl=30s", "--kill-after=200ms", "stuck"}, childArgs("stuck", "ignore"))...)
	held := kids.await("start", "stuck")
	next := leasekit(t, kids, cmdline([]string{"lock", ep(c.Endpoints()...), "--timeout=20s", "stuck"}, childArgs("next", "hold"))...)
	testkit.AwaitKeys(t, c.Client(), "/leasekit/lock/stuck/", 2)
	stuck.signal(t, syscall.SIGSTOP)
	t.Cleanup(func() { stuck.cmd.Process.Signal(syscall.SIGCONT) })

	code, out, stderr := runLeasekit(t, nil, "unlock", ep(c.Endpoints()...), "--force", "--token="+fmt.Sprint(held.token), "stuck")
	if code != 0 || !strings.Contains(out, "deleted "+held.key) || !strings.Contains(out, fmt.Sprintf("token %d", held.token)) {
		t.Fatalf("unlock: status %d, stdout %q, stderr %q", code, out, stderr)
	}
	kids.await("start", "next")
	// The old token breaks nothing now.
	code, _, stderr = runLeasekit(t, nil, "unlock", ep(c.Endpoints()...), "--force", "--token="+fmt.Sprint(held.token), "stuck")
	if code != exitNone || !strings.Contains(stderr, "nothing deleted") {
		t.Fatalf("unlock of a broken token: status %d, stderr %q", code, stderr)
	}

	stuck.signal(t, syscall.SIGCONT)
	if ev := kids.await("signal", "stuck"); ev.sig != syscall.SIGTERM {
		t.Fatalf("the stuck command got %v", ev.sig)
	}
	kids.await("exit", "stuck")
	if code := stuck.wait(t); code != exitLost || !strings.Contains(stuck.output(), "SIGKILL") {
		t.Fatalf("stuck leasekit exited %d, want %d; stderr %q", code, exitLost, stuck.output())
	}
	kids.tell("next", 0)
	next.exits(t, "next", 0)
}

// TestSemaphore runs three `leasekit sem --limit 2`: two commands run at
// once, the third waits; --try with both permits taken exits 75; another
// limit for the same name is refused with 64.
func TestSemaphore(t *testing.T) {
	t.Parallel()
	c := embedtest.New(t)
	kids := newChildren(t)
	args := []string{"sem", ep(c.Endpoints()...), "--limit=2", "pool"}
	a := leasekit(t, kids, cmdline(args, childArgs("a", "hold"))...)
	b := leasekit(t, kids, cmdline(args, childArgs("b", "hold"))...)
	kids.await("start", "a")
	kids.await("start", "b")
	code, _, stderr := runLeasekit(t, kids, cmdline(append([]string{"sem", "--try"}, args[1:]...), childArgs("try", "exit", "0"))...)
	if code != exitNotTaken {
		t.Fatalf("--try with both permits taken: status %d, stderr %q", code, stderr)
	}
	code, _, stderr = runLeasekit(t, kids, cmdline([]string{"sem", ep(c.Endpoints()...), "--limit=3", "pool"}, childArgs("three", "exit", "0"))...)
	if code != exitUsage || !strings.Contains(stderr, "limit") {
		t.Fatalf("another limit: status %d, stderr %q", code, stderr)
	}
	third := leasekit(t, kids, cmdline(args, childArgs("c", "hold"))...)
	testkit.AwaitKeys(t, c.Client(), "/leasekit/lock/%sem/pool/q/", 3)
	if kids.seen("start", "c") {
		t.Fatal("a third command runs under a limit of 2")
	}
	_, out, _ := runLeasekit(t, nil, "inspect", ep(c.Endpoints()...), "--kind=sem", "pool")
	if !strings.Contains(out, "limit 2, 2 held, 1 waiting") {
		t.Fatalf("inspect --kind=sem: %q", out)
	}
	kids.tell("a", 0)
	kids.await("start", "c")
	for tag, p := range map[string]*proc{"b": b, "c": third} {
		kids.tell(tag, 0)
		if code := p.wait(t); code != 0 {
			t.Fatalf("%s exited %d", tag, code)
		}
	}
	a.exits(t, "a", 0)
}
