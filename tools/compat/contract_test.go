package compat

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/leasekit/leasekit/election"
	"github.com/leasekit/leasekit/etcdclient"
	"github.com/leasekit/leasekit/etcdlock"
	"github.com/leasekit/leasekit/ratelimit"
)

// TestContracts runs the contracts against one three-member cluster of
// the server in LEASEKIT_COMPAT_ETCD, in order: the last subtests kill
// members and turn authentication on.
func TestContracts(t *testing.T) {
	c := startCluster(t, etcdBinary(t))
	ctx := testCtx(t, time.Minute)
	st, err := c.client(t).Status(ctx, c.members[0].clientURL)
	require.NoError(t, err)
	t.Logf("compat: etcd server %s, 3 members, fsync on, default timing", st.Version)

	t.Run("Lock", func(t *testing.T) { testLock(t, c) })
	t.Run("Election", func(t *testing.T) { testElection(t, c) })
	t.Run("RateLimit", func(t *testing.T) { testRateLimit(t, c) })
	t.Run("KillLeader", func(t *testing.T) { testKillLeader(t, c) })
	t.Run("QuorumLoss", func(t *testing.T) { testQuorumLoss(t, c) })
	t.Run("Auth", func(t *testing.T) { testAuth(t, c) })
}

func testCtx(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func newLocker(t testing.TB, cli *clientv3.Client) *etcdlock.Locker {
	t.Helper()
	l, err := etcdlock.New(cli)
	require.NoError(t, err)
	t.Cleanup(func() { l.Close() })
	return l
}

// queued starts a Lock of name on l and returns its outcome, once the
// waiter's key is in etcd.
func queued(t *testing.T, ctx context.Context, l *etcdlock.Locker, watcher *clientv3.Client, name string) <-chan lockResult {
	t.Helper()
	prefix, err := l.KeyPrefix(name)
	require.NoError(t, err)
	out := make(chan lockResult, 1)
	afterPut(t, ctx, watcher, prefix, func() {
		go func() {
			lk, err := l.Lock(ctx, name, 10*time.Second)
			out <- lockResult{lk, err}
		}()
	})
	return out
}

// afterPut runs start and returns once a key under prefix is put, as a
// watch opened before start sees it.
func afterPut(t *testing.T, ctx context.Context, watcher *clientv3.Client, prefix string, start func()) {
	t.Helper()
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wch := watcher.Watch(clientv3.WithRequireLeader(wctx), prefix, clientv3.WithPrefix(), clientv3.WithFilterDelete(), clientv3.WithCreatedNotify())
	<-wch // created
	start()
	for resp := range wch {
		require.NoError(t, resp.Err())
		if len(resp.Events) > 0 {
			return
		}
	}
	t.Fatalf("watch on %s ended: %v", prefix, ctx.Err())
}

type lockResult struct {
	lk  etcdlock.Lock
	err error
}

func await(t *testing.T, ctx context.Context, ch <-chan lockResult) etcdlock.Lock {
	t.Helper()
	select {
	case r := <-ch:
		require.NoError(t, r.err)
		return r.lk
	case <-ctx.Done():
		t.Fatalf("lock not granted: %v", ctx.Err())
		return nil
	}
}

// The lock contract: mutual exclusion, FIFO, fencing tokens, a guard,
// TryLock, the TTL etcd grants, and expiry without refresh.
func testLock(t *testing.T, c *cluster) {
	ctx := testCtx(t, time.Minute)
	cli1, cli2, cli3 := c.client(t), c.client(t), c.client(t)
	l1, l2, l3 := newLocker(t, cli1), newLocker(t, cli2), newLocker(t, cli3)

	lk, err := l1.LockWithOptions(ctx, etcdlock.LockOptions{Key: "compat/ttl", TTL: time.Second})
	require.NoError(t, err)
	t.Logf("compat: a 1s lock TTL is granted as %v", lk.TTL())
	require.Equal(t, 2*time.Second, lk.TTL(), "etcd's minimum TTL with a 1s election timeout")
	// Without AutoRefresh the lock expires after its TTL, and its holder is told.
	select {
	case <-lk.Done():
	case <-ctx.Done():
		t.Fatal("a lock without refresh outlived its TTL")
	}
	require.ErrorIs(t, lk.Release(ctx), etcdlock.ErrNotHeld)

	const name = "compat/fifo"
	h, err := l1.Lock(ctx, name, 10*time.Second)
	require.NoError(t, err)
	_, ok, err := l2.TryLock(ctx, name, 10*time.Second)
	require.NoError(t, err)
	require.False(t, ok, "TryLock of a held lock")

	fenced := func(lk etcdlock.Lock) bool {
		resp, err := cli3.Txn(ctx).If(lk.Guard()).Then(clientv3.OpPut("compat/fenced", "x")).Commit()
		require.NoError(t, err)
		return resp.Succeeded
	}
	require.True(t, fenced(h), "a write guarded by the holder")

	w2 := queued(t, ctx, l2, cli1, name)
	w3 := queued(t, ctx, l3, cli1, name)
	require.NoError(t, h.Release(ctx))
	require.False(t, fenced(h), "a write guarded by a released hold")
	g2 := await(t, ctx, w2)
	require.Greater(t, g2.Token(), h.Token())
	select {
	case <-w3:
		t.Fatal("the third waiter was granted the lock while the second holds it")
	default:
	}
	require.NoError(t, g2.Release(ctx))
	g3 := await(t, ctx, w3)
	require.Greater(t, g3.Token(), g2.Token())
	require.NoError(t, g3.Release(ctx))
}

// The election contract: no leader, a win, the term, handover on
// Resign, and Observe.
func testElection(t *testing.T, c *cluster) {
	ctx := testCtx(t, time.Minute)
	e1, err := election.New(c.client(t), "compat", election.WithTTL(5*time.Second))
	require.NoError(t, err)
	e2, err := election.New(c.client(t), "compat", election.WithTTL(5*time.Second))
	require.NoError(t, err)

	_, err = e1.Leader(ctx)
	require.ErrorIs(t, err, election.ErrNoLeader)
	octx, stop := context.WithCancel(ctx)
	defer stop()
	obs := e2.Observe(octx)
	require.Equal(t, election.Leader{}, <-obs, "Observe reports no leader first")

	require.NoError(t, e1.Campaign(ctx, "one"))
	first, err := e2.Leader(ctx)
	require.NoError(t, err)
	require.Equal(t, "one", first.Value)
	require.Equal(t, first, <-obs)

	won := make(chan error, 1)
	go func() { won <- e2.Campaign(ctx, "two") }()
	require.NoError(t, e1.Resign(ctx))
	require.NoError(t, <-won)
	second, err := e1.Leader(ctx)
	require.NoError(t, err)
	require.Equal(t, "two", second.Value)
	require.Greater(t, second.Rev, first.Rev, "the term increases")
	for l := range obs {
		if l == second {
			break
		}
		require.Contains(t, []election.Leader{first, {}}, l, "Observe reported a leader that never led")
	}
	require.NoError(t, e2.Resign(ctx))
	_, err = e1.Leader(ctx)
	require.ErrorIs(t, err, election.ErrNoLeader)
}

// The rate-limit contract: two instances share one exact limit.
func testRateLimit(t *testing.T, c *cluster) {
	ctx := testCtx(t, time.Minute)
	limit := ratelimit.Limit{Rate: 10, Period: time.Hour, Burst: 10}
	var lims []*ratelimit.Limiter
	for range 2 {
		lim, err := ratelimit.New(c.client(t), "compat", limit, ratelimit.WithBatchWindow(0))
		require.NoError(t, err)
		t.Cleanup(func() { lim.Close() })
		lims = append(lims, lim)
	}
	allowed := 0
	var last ratelimit.Result
	for i := range 16 {
		r, err := lims[i%2].Allow(ctx, "tenant")
		require.NoError(t, err)
		allowed += r.Allowed
		last = r
	}
	require.Equal(t, limit.Burst, allowed, "allowed across both instances")
	require.Zero(t, last.Allowed)
	require.Positive(t, last.RetryAfter)
}

// A hold, a waiter, a leader and a limiter on clients of every member
// carry on when the etcd leader is killed (SIGKILL) and restarted.
func testKillLeader(t *testing.T, c *cluster) {
	ctx := testCtx(t, 2*time.Minute)
	cli1 := c.client(t)
	lead, err := c.leader(ctx, cli1)
	require.NoError(t, err)
	// The waiters talk to the members that stay up: a write whose
	// response the crash swallowed would leave its outcome unknown, and
	// Campaign then returns an error for the caller (or Run) to retry.
	var others []int
	for i := range c.members {
		if i != lead {
			others = append(others, i)
		}
	}
	cli2 := c.client(t, others...)
	l1, l2 := newLocker(t, cli1), newLocker(t, cli2)
	const name = "compat/kill"
	h, err := l1.LockWithOptions(ctx, etcdlock.LockOptions{Key: name, TTL: 10 * time.Second, AutoRefresh: true})
	require.NoError(t, err)
	w := queued(t, ctx, l2, cli1, name)
	e1, err := election.New(cli1, "compat-kill", election.WithTTL(10*time.Second))
	require.NoError(t, err)
	e2, err := election.New(cli2, "compat-kill", election.WithTTL(10*time.Second))
	require.NoError(t, err)
	require.NoError(t, e1.Campaign(ctx, "one"))
	// e2 waits in line: its key is in etcd before the leader is killed.
	won := make(chan error, 1)
	afterPut(t, ctx, cli1, e2.KeyPrefix(), func() {
		go func() { won <- e2.Campaign(ctx, "two") }()
	})
	lim, err := ratelimit.New(cli2, "compat-kill", ratelimit.Limit{Rate: 1000, Period: time.Second, Burst: 1000}, ratelimit.WithBatchWindow(0))
	require.NoError(t, err)
	t.Cleanup(func() { lim.Close() })

	c.kill(lead)
	t.Logf("killed the leader, %s", c.members[lead].name)
	require.NoError(t, retry(ctx, func(ctx context.Context) error {
		_, err := c.leader(ctx, cli1)
		return err
	}))

	// The hold survived: a write it guards goes through.
	require.NoError(t, retry(ctx, func(ctx context.Context) error {
		resp, err := cli1.Txn(ctx).If(h.Guard()).Then(clientv3.OpPut("compat/kill-fenced", "x")).Commit()
		if err == nil && !resp.Succeeded {
			return errors.New("the hold was lost")
		}
		return err
	}))
	require.NoError(t, retry(ctx, func(ctx context.Context) error {
		r, err := lim.Allow(ctx, "k")
		if err == nil && r.Allowed != 1 {
			return errors.New("denied")
		}
		return err
	}))

	require.NoError(t, c.restart(ctx, lead))
	// The restarted member caught up: a read it serves alone sees the write.
	resp, err := c.client(t, lead).Get(ctx, "compat/kill-fenced")
	require.NoError(t, err)
	require.Len(t, resp.Kvs, 1)

	select {
	case <-h.Done():
		t.Fatal("the hold was lost across the leader's crash")
	default:
	}
	require.NoError(t, h.Release(ctx))
	g := await(t, ctx, w)
	require.Greater(t, g.Token(), h.Token())
	require.NoError(t, g.Release(ctx))
	require.NoError(t, e1.Resign(ctx))
	require.NoError(t, <-won)
	require.NoError(t, e2.Resign(ctx))
}

// With two of three members killed, a holder on the survivor is told
// its lock is lost before its TTL could run out, and a watch that
// requires a leader ends; once they restart, locks work again.
func testQuorumLoss(t *testing.T, c *cluster) {
	ctx := testCtx(t, 2*time.Minute)
	cli := c.client(t, 0)
	l := newLocker(t, cli)
	h, err := l.LockWithOptions(ctx, etcdlock.LockOptions{Key: "compat/quorum", TTL: 3 * time.Second, AutoRefresh: true})
	require.NoError(t, err)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wch := cli.Watch(clientv3.WithRequireLeader(wctx), "compat/quorum-watch", clientv3.WithCreatedNotify())
	<-wch

	killed := time.Now()
	c.kill(1)
	c.kill(2)
	select {
	case <-h.Done():
		// A leader that lost its quorum renews leases until it steps
		// down, about an election timeout later.
		t.Logf("compat: quorum lost: the holder was told %v after the kill (TTL %v)", time.Since(killed).Round(100*time.Millisecond), h.TTL())
	case <-ctx.Done():
		t.Fatal("the holder was not told its lock was lost")
	}
	var werr error
	for resp := range wch {
		if werr = resp.Err(); werr != nil {
			break
		}
	}
	t.Logf("compat: quorum lost: a watch requiring a leader ended after %v: %v", time.Since(killed).Round(100*time.Millisecond), werr)
	require.ErrorIs(t, werr, rpctypes.ErrNoLeader)

	require.NoError(t, c.restart(ctx, 1))
	require.NoError(t, c.restart(ctx, 2))
	lk, err := l.Lock(ctx, "compat/quorum", 3*time.Second)
	require.NoError(t, err)
	require.Greater(t, lk.Token(), h.Token())
	require.NoError(t, lk.Release(ctx))
}

// With authentication on, a user with read-write rights on leasekit's
// prefixes can lock, lead and rate-limit; a user without rights is
// refused at once rather than left waiting.
func testAuth(t *testing.T, c *cluster) {
	ctx := testCtx(t, time.Minute)
	admin := c.client(t)
	_, err := admin.RoleAdd(ctx, "root")
	require.NoError(t, err)
	_, err = admin.UserAdd(ctx, "root", "root-pw")
	require.NoError(t, err)
	_, err = admin.UserGrantRole(ctx, "root", "root")
	require.NoError(t, err)
	_, err = admin.RoleAdd(ctx, "app")
	require.NoError(t, err)
	_, err = admin.RoleGrantPermission(ctx, "app", "/leasekit/", clientv3.GetPrefixRangeEnd("/leasekit/"), clientv3.PermissionType(clientv3.PermReadWrite))
	require.NoError(t, err)
	_, err = admin.UserAdd(ctx, "app", "app-pw")
	require.NoError(t, err)
	_, err = admin.UserGrantRole(ctx, "app", "app")
	require.NoError(t, err)
	_, err = admin.UserAdd(ctx, "nobody", "nobody-pw")
	require.NoError(t, err)
	_, err = admin.AuthEnable(ctx)
	require.NoError(t, err)

	user := func(name, password string) *clientv3.Client {
		cfg := etcdclient.Config(c.endpoints()...)
		cfg.Username, cfg.Password = name, password
		cli, err := clientv3.New(cfg)
		require.NoError(t, err)
		t.Cleanup(func() { cli.Close() })
		return cli
	}
	app := user("app", "app-pw")
	lk, err := newLocker(t, app).Lock(ctx, "compat/auth", 5*time.Second)
	require.NoError(t, err)
	require.NoError(t, lk.Release(ctx))
	e, err := election.New(app, "compat-auth", election.WithTTL(5*time.Second))
	require.NoError(t, err)
	require.NoError(t, e.Campaign(ctx, "app"))
	require.NoError(t, e.Resign(ctx))
	lim, err := ratelimit.New(app, "compat-auth", ratelimit.PerSecond(10))
	require.NoError(t, err)
	t.Cleanup(func() { lim.Close() })
	r, err := lim.Allow(ctx, "k")
	require.NoError(t, err)
	require.Equal(t, 1, r.Allowed)

	nobody := user("nobody", "nobody-pw")
	_, err = newLocker(t, nobody).Lock(ctx, "compat/auth", 5*time.Second)
	require.ErrorIs(t, err, rpctypes.ErrPermissionDenied)
	require.NoError(t, ctx.Err(), "refused at once, not at the deadline")
	ne, err := election.New(nobody, "compat-auth")
	require.NoError(t, err)
	require.ErrorIs(t, ne.Campaign(ctx, "nobody"), rpctypes.ErrPermissionDenied)
	nlim, err := ratelimit.New(nobody, "compat-auth", ratelimit.PerSecond(10))
	require.NoError(t, err)
	t.Cleanup(func() { nlim.Close() })
	_, err = nlim.Allow(ctx, "k")
	require.ErrorIs(t, err, rpctypes.ErrPermissionDenied)
}

// retry calls f until it succeeds or ctx ends, for calls that a crashed
// member can fail (Unavailable, no leader, a timeout) and that are safe
// to repeat.
func retry(ctx context.Context, f func(ctx context.Context) error) error {
	for {
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := f(actx)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return errors.Join(err, ctx.Err())
		case <-time.After(100 * time.Millisecond): // between calls
		}
	}
}
