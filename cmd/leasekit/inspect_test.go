//go:build unix

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/leasekit/leasekit/embedtest"
	"github.com/leasekit/leasekit/internal/testkit"
)

// TestInspectJSON reads a lock's holder and waiter and an election's
// leader from `inspect --json` and checks them against what the commands
// were told; the text form says the same.
func TestInspectJSON(t *testing.T) {
	t.Parallel()
	c := embedtest.New(t)
	kids := newChildren(t)
	lockArgs := []string{"lock", ep(c.Endpoints()...), "--ttl=30s", "tenant/acme"}
	holder := leasekit(t, kids, cmdline(lockArgs, childArgs("holder", "hold"))...)
	held := kids.await("start", "holder")
	waiter := leasekit(t, kids, cmdline(lockArgs, childArgs("waiter", "exit", "0"))...)
	testkit.AwaitKeys(t, c.Client(), "/leasekit/lock/tenant%2Facme/", 2)
	leader := leasekit(t, kids, cmdline([]string{"elect", ep(c.Endpoints()...), "--once", "--value=replica-1", "tenant/acme"}, childArgs("leader", "hold"))...)
	led := kids.await("start", "leader")

	code, out, stderr := runLeasekit(t, nil, "inspect", ep(c.Endpoints()...), "--json", "tenant/acme")
	if code != 0 {
		t.Fatalf("inspect --json: status %d, stderr %q", code, stderr)
	}
	var got inspectJSON
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("inspect --json printed %q: %v", out, err)
	}
	l := got.Lock
	switch {
	case got.Name != "tenant/acme", l == nil, l.Holder == nil, got.Election == nil, got.Election.Leader == nil, got.Semaphore != nil:
		t.Fatalf("inspect --json: %s", out)
	case l.Prefix != "/leasekit/lock/tenant%2Facme/" || l.EtcdctlName != "/leasekit/lock/tenant%2Facme":
		t.Errorf("prefix %q, etcdctl name %q", l.Prefix, l.EtcdctlName)
	case l.Holder.Token != held.token || l.Holder.Key != held.key:
		t.Errorf("holder %+v; the command was told token %d, key %s", l.Holder, held.token, held.key)
	case l.Holder.TTL <= 0 || l.Holder.TTL > 30 || l.Holder.LeaseHex != fmt.Sprintf("%x", l.Holder.Lease):
		t.Errorf("holder's lease: %+v", l.Holder)
	case l.Holder.Metadata["cmd"] != filepath.Base(childArgs("x")[0]) || l.Holder.Metadata["pid"] == "":
		t.Errorf("holder's metadata %v", l.Holder.Metadata)
	case len(l.Waiters) != 1 || l.Waiters[0].Token <= held.token:
		t.Errorf("waiters %+v", l.Waiters)
	case got.Election.Leader.Term != led.token || got.Election.Leader.Value != "replica-1" || len(got.Election.Candidates) != 0:
		t.Errorf("election %+v; the leader's command was told term %d", got.Election, led.token)
	}
	_, text, _ := runLeasekit(t, nil, "inspect", ep(c.Endpoints()...), "tenant/acme")
	for _, want := range []string{
		"lock \"tenant/acme\": prefix /leasekit/lock/tenant%2Facme/ (etcdctl lock /leasekit/lock/tenant%2Facme)",
		fmt.Sprintf("holder       token %d", held.token), "waiter 1", "key " + held.key,
		fmt.Sprintf("leader       term %d", led.token), `value "replica-1"`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("inspect printed %q; want %q in it", text, want)
		}
	}
	kids.tell("holder", 0)
	kids.tell("leader", 0)
	for _, p := range []*proc{holder, waiter, leader} {
		if code := p.wait(t); code != 0 {
			t.Fatalf("%q exited %d; stderr %q", p.cmd.Args, code, p.output())
		}
	}
}

// TestInteropWithEtcdMutex takes the prefix `inspect` prints and checks
// that etcd's concurrency.Mutex on it (what `etcdctl lock` uses) and
// `leasekit lock` exclude each other, in both directions.
func TestInteropWithEtcdMutex(t *testing.T) {
	t.Parallel()
	c := embedtest.New(t)
	kids := newChildren(t)
	_, out, _ := runLeasekit(t, nil, "inspect", ep(c.Endpoints()...), "--json", "--kind=lock", "shared/job")
	var got inspectJSON
	if err := json.Unmarshal([]byte(out), &got); err != nil || got.Lock == nil {
		t.Fatalf("inspect --json printed %q: %v", out, err)
	}
	s, err := concurrency.NewSession(c.Client(), concurrency.WithTTL(10))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	m := concurrency.NewMutex(s, got.Lock.EtcdctlName)
	ctx := testkit.Context(t)

	// etcd's mutex holds: leasekit --try is refused; leasekit waits.
	if err := m.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	args := []string{"lock", ep(c.Endpoints()...), "shared/job"}
	code, _, _ := runLeasekit(t, kids, cmdline(append([]string{"lock", "--try"}, args[1:]...), childArgs("try", "exit", "0"))...)
	if code != exitNotTaken {
		t.Fatalf("leasekit --try while etcd's mutex holds: status %d", code)
	}
	p := leasekit(t, kids, cmdline(args, childArgs("waits", "hold"))...)
	testkit.AwaitKeys(t, c.Client(), got.Lock.Prefix, 2)
	if kids.seen("start", "waits") {
		t.Fatal("leasekit ran its command while etcd's mutex held the lock")
	}
	if err := m.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	kids.await("start", "waits")

	// leasekit holds: etcd's TryLock is refused.
	if err := m.TryLock(ctx); !errors.Is(err, concurrency.ErrLocked) {
		t.Fatalf("concurrency.Mutex.TryLock while leasekit holds: %v", err)
	}
	locked := make(chan error, 1)
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { locked <- m.Lock(lctx) }()
	testkit.AwaitKeys(t, c.Client(), got.Lock.Prefix, 2)
	kids.tell("waits", 0)
	if err := <-locked; err != nil {
		t.Fatalf("etcd's mutex after leasekit released: %v", err)
	}
	p.exits(t, "leasekit", 0)
	if err := m.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
}
