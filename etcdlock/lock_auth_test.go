package etcdlock_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/leasekit/leasekit/embedtest"
	"github.com/leasekit/leasekit/etcdlock"
	"github.com/leasekit/leasekit/internal/testkit"
)

// authPrompt is how long a call refused by etcd's auth may take: one
// round trip, plus the bounded cleanup of a lease granted before the
// refusal. A retry loop would take until its context ends.
const authPrompt = 3 * time.Second

// authCluster returns a root client of a one-member cluster with auth on,
// and clients for a user whose role may read and write the leasekit prefix, a user who may
// only read it, and a user with no rights at all.
func authCluster(t *testing.T) (root, app, reader, nobody *clientv3.Client) {
	t.Helper()
	c := embedtest.New(t)
	ctx := testkit.Context(t)
	root, err := c.EnableAuth(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if app, err = c.AddUser(ctx, "app", embedtest.Grant{Prefix: "/leasekit/", Perm: clientv3.PermissionType(clientv3.PermReadWrite)}); err != nil {
		t.Fatal(err)
	}
	if reader, err = c.AddUser(ctx, "reader", embedtest.Grant{Prefix: "/leasekit/", Perm: clientv3.PermissionType(clientv3.PermRead)}); err != nil {
		t.Fatal(err)
	}
	if nobody, err = c.AddUser(ctx, "nobody"); err != nil {
		t.Fatal(err)
	}
	return root, app, reader, nobody
}

// TestAuth runs the auth cases on one cluster: setting auth up costs
// bcrypt hashes, which are slow under the race detector.
func TestAuth(t *testing.T) {
	root, app, reader, nobody := authCluster(t)
	t.Run("prefix user", func(t *testing.T) { testAuthPrefixUser(t, root, app) })
	t.Run("no rights", func(t *testing.T) { testAuthNoRights(t, root, reader, nobody) })
	// Last: it takes the app user's rights away.
	t.Run("rights revoked while held", func(t *testing.T) { testAuthRightsRevokedWhileHeld(t, root, app) })
}

// testAuthPrefixUser: a user whose role is limited to the leasekit prefix
// can use every part of a Locker.
func testAuthPrefixUser(t *testing.T, root, app *clientv3.Client) {
	ctx := testkit.Context(t)
	l := newLocker(t, app)
	for _, auto := range []bool{false, true} {
		lk, err := l.LockWithOptions(ctx, etcdlock.LockOptions{Key: "auth", TTL: 5 * time.Second, AutoRefresh: auto})
		if err != nil {
			t.Fatalf("Lock (AutoRefresh=%v): %v", auto, err)
		}
		if err := lk.Refresh(ctx, 5*time.Second); err != nil {
			t.Errorf("Refresh: %v", err)
		}
		if ok, err := lk.IsValid(ctx); !ok || err != nil {
			t.Errorf("IsValid: %v %v", ok, err)
		}
		if info, err := l.Inspect(ctx, "auth"); err != nil || info.Holder == nil || info.Holder.Token != lk.Token() {
			t.Errorf("Inspect: %+v %v", info, err)
		}
		if _, ok, err := l.TryLock(ctx, "auth", time.Second); ok || err != nil {
			t.Errorf("TryLock of a held lock: %v %v", ok, err)
		}
		if err := lk.Release(ctx); err != nil {
			t.Errorf("Release: %v", err)
		}
	}
	ran := false
	if err := etcdlock.NewManager(l).WithLock(ctx, "auth", 5*time.Second, func(context.Context) error {
		ran = true
		return nil
	}); err != nil || !ran {
		t.Errorf("WithLock: %v (ran %v)", err, ran)
	}
	if err := l.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if n := testkit.CountKeys(t, root, etcdlock.DefaultPrefix); n != 0 {
		t.Errorf("%d keys left", n)
	}
}

// testAuthNoRights: a user without rights on the prefix gets
// rpctypes.ErrPermissionDenied from every call at once, with no retry and
// nothing left behind.
func testAuthNoRights(t *testing.T, root, reader, nobody *clientv3.Client) {
	for _, u := range []struct {
		name string
		cli  *clientv3.Client
	}{{"no role", nobody}, {"read-only role", reader}} {
		t.Run(u.name, func(t *testing.T) {
			l := newLocker(t, u.cli)
			m := etcdlock.NewManager(l)
			calls := map[string]func(ctx context.Context) error{
				"Lock": func(ctx context.Context) error { _, err := l.Lock(ctx, "auth", 5*time.Second); return err },
				"Lock(AutoRefresh)": func(ctx context.Context) error {
					_, err := l.LockWithOptions(ctx, etcdlock.LockOptions{Key: "auth", TTL: 5 * time.Second, AutoRefresh: true})
					return err
				},
				"TryLock": func(ctx context.Context) error { _, _, err := l.TryLock(ctx, "auth", 5*time.Second); return err },
				"WithLock": func(ctx context.Context) error {
					return m.WithLock(ctx, "auth", 5*time.Second, func(context.Context) error { return nil })
				},
			}
			if u.cli == nobody {
				calls["Inspect"] = func(ctx context.Context) error { _, err := l.Inspect(ctx, "auth"); return err }
			}
			for name, call := range calls {
				// The context allows far longer than a refusal takes, so
				// that a retry loop shows as a slow call.
				ctx, cancel := context.WithTimeout(context.Background(), 10*authPrompt)
				start := time.Now()
				err := call(ctx)
				took := time.Since(start)
				cancel()
				if !errors.Is(err, rpctypes.ErrPermissionDenied) {
					t.Errorf("%s: want an error wrapping rpctypes.ErrPermissionDenied, got %v", name, err)
				}
				if took > authPrompt {
					t.Errorf("%s took %v to be refused", name, took)
				}
				t.Logf("%s refused in %v: %v", name, took.Round(time.Millisecond), err)
			}
			if err := l.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
			ctx := testkit.Context(t)
			if n := testkit.CountKeys(t, root, etcdlock.DefaultPrefix); n != 0 {
				t.Errorf("%d keys left", n)
			}
			if resp, err := root.Leases(ctx); err != nil || len(resp.Leases) != 0 {
				t.Errorf("leases left: %v %v", resp, err)
			}
		})
	}
}

// testAuthRightsRevokedWhileHeld: when a holder loses its rights, Release
// says so at once; the hold then ends when its lease expires, and others
// can take the lock.
func testAuthRightsRevokedWhileHeld(t *testing.T, root, app *clientv3.Client) {
	ctx := testkit.Context(t)
	l := newLocker(t, app)
	lk, err := l.Lock(ctx, "revoked", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := root.RoleRevokePermission(ctx, "app", "/leasekit/", clientv3.GetPrefixRangeEnd("/leasekit/")); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = lk.Release(ctx)
	if !errors.Is(err, rpctypes.ErrPermissionDenied) || time.Since(start) > authPrompt {
		t.Errorf("Release without rights: want ErrPermissionDenied at once, got %v after %v", err, time.Since(start))
	}
	// The change of rights makes every client log in again, which takes
	// a second under the race detector: a short TTL would not survive it.
	other := newLocker(t, root)
	next, err := other.LockWithOptions(ctx, etcdlock.LockOptions{Key: "revoked", TTL: 5 * time.Second, AutoRefresh: true,
		Timeout: 10 * time.Second})
	if err != nil {
		t.Fatalf("the lock of a holder without rights never freed: %v", err)
	}
	if err := next.Release(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestStaleHandleCannotTouchNewHold: a holder can never release or
// refresh another holder's lock. After a hold is lost and someone else
// acquires the name, the stale handle's Release and Refresh return
// ErrNotHeld and leave the new hold intact; its Guard fails.
func TestStaleHandleCannotTouchNewHold(t *testing.T) {
	c := embedtest.New(t)
	ctx := testkit.Context(t)
	for _, tc := range []struct {
		name      string
		auto      bool
		sameOwner bool // the new hold is the same Locker's
	}{
		{"TTL lock, other Locker", false, false},
		{"AutoRefresh lock, other Locker", true, false},
		{"TTL lock, same Locker", false, true},
		{"AutoRefresh lock, same Locker", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := newLocker(t, c.Client())
			b := a
			if !tc.sameOwner {
				b = newLocker(t, c.Client())
			}
			opts := etcdlock.LockOptions{Key: "stale", TTL: 5 * time.Second, AutoRefresh: tc.auto}
			stale, err := a.LockWithOptions(ctx, opts)
			if err != nil {
				t.Fatal(err)
			}
			info, err := a.Inspect(ctx, "stale")
			if err != nil {
				t.Fatal(err)
			}
			// The lease goes, as by expiry; the holder is told.
			if _, err := c.Client().Revoke(ctx, clientv3.LeaseID(info.Holder.LeaseID)); err != nil {
				t.Fatal(err)
			}
			<-stale.Done()
			if tc.auto && tc.sameOwner {
				// Another TTL, so another shared lease: the Locker may not
				// know yet that the first one is gone (see
				// TestMisuseLockAfterSharedLeaseLost).
				opts.TTL = 6 * time.Second
			}
			fresh, err := b.LockWithOptions(ctx, opts)
			if err != nil {
				t.Fatal(err)
			}
			if err := stale.Refresh(ctx, 5*time.Second); !errors.Is(err, etcdlock.ErrNotHeld) {
				t.Errorf("stale Refresh: want ErrNotHeld, got %v", err)
			}
			if err := stale.Refresh(ctx, 7*time.Second); !errors.Is(err, etcdlock.ErrNotHeld) {
				t.Errorf("stale Refresh to another TTL: want ErrNotHeld, got %v", err)
			}
			if err := stale.Release(ctx); !errors.Is(err, etcdlock.ErrNotHeld) {
				t.Errorf("stale Release: want ErrNotHeld, got %v", err)
			}
			if err := stale.Release(ctx); !errors.Is(err, etcdlock.ErrNotHeld) {
				t.Errorf("stale Release again: want ErrNotHeld, got %v", err)
			}
			resp, err := c.Client().Txn(ctx).If(stale.Guard()).Commit()
			if err != nil || resp.Succeeded {
				t.Errorf("stale Guard holds: %v", err)
			}
			if ok, err := fresh.IsValid(ctx); !ok || err != nil {
				t.Errorf("the new hold was disturbed: %v %v", ok, err)
			}
			info, err = a.Inspect(ctx, "stale")
			if err != nil || info.Holder == nil || info.Holder.Token != fresh.Token() {
				t.Errorf("Inspect after the stale calls: %+v %v", info.Holder, err)
			}
			if err := fresh.Release(ctx); err != nil {
				t.Errorf("Release of the new hold: %v", err)
			}
		})
	}
	// A released handle of a reused slot: the same Locker's next hold of
	// the name reuses the key, with a new create revision.
	l := newLocker(t, c.Client())
	old, err := l.Lock(ctx, "reuse", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := old.Release(ctx); err != nil {
		t.Fatal(err)
	}
	cur, err := l.Lock(ctx, "reuse", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := old.Release(ctx); !errors.Is(err, etcdlock.ErrNotHeld) {
		t.Errorf("second Release of a reused slot's old handle: %v", err)
	}
	if err := old.Refresh(ctx, 5*time.Second); !errors.Is(err, etcdlock.ErrNotHeld) {
		t.Errorf("Refresh of a reused slot's old handle: %v", err)
	}
	if ok, err := cur.IsValid(ctx); !ok || err != nil {
		t.Errorf("the new hold was disturbed: %v %v", ok, err)
	}
	if err := cur.Release(ctx); err != nil {
		t.Error(err)
	}
}
