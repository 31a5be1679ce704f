package etcdlock_test

import (
	"context"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/leasekit/leasekit/embedtest"
	"github.com/leasekit/leasekit/etcdlock"
)

// exampleCluster starts an embedded etcd for an example.
func exampleCluster() (*embedtest.Cluster, func()) {
	c, err := embedtest.Start(context.Background())
	if err != nil {
		panic(err)
	}
	return c, func() { c.Close() }
}

func ExampleLocker_Lock() {
	c, stop := exampleCluster()
	defer stop()
	ctx := context.Background()

	locker, err := etcdlock.New(c.Client())
	if err != nil {
		panic(err)
	}
	defer locker.Close()

	// Without AutoRefresh the lock expires after its TTL unless refreshed.
	lk, err := locker.Lock(ctx, "reports/daily", 10*time.Second)
	if err != nil {
		panic(err)
	}
	fmt.Println("holding", lk.Key(), "for", lk.TTL())
	if err := lk.Release(ctx); err != nil {
		panic(err)
	}
	fmt.Println("released twice:", lk.Release(ctx))
	// Output:
	// holding reports/daily for 10s
	// released twice: etcdlock: lock not held: already released
}

func ExampleLocker_TryLock() {
	c, stop := exampleCluster()
	defer stop()
	ctx := context.Background()
	locker, err := etcdlock.New(c.Client())
	if err != nil {
		panic(err)
	}
	defer locker.Close()

	first, ok, err := locker.TryLock(ctx, "cron/cleanup", 5*time.Second)
	fmt.Println("first:", ok, err)
	_, ok, err = locker.TryLock(ctx, "cron/cleanup", 5*time.Second)
	fmt.Println("second:", ok, err)
	first.Release(ctx)
	// Output:
	// first: true <nil>
	// second: false <nil>
}

func ExampleManager_WithLock() {
	c, stop := exampleCluster()
	defer stop()
	ctx := context.Background()
	cli := c.Client()
	locker, err := etcdlock.New(cli)
	if err != nil {
		panic(err)
	}
	defer locker.Close()

	m := etcdlock.NewManager(locker)
	err = m.WithLock(ctx, "tenant/7", 5*time.Second, func(ctx context.Context) error {
		// The lock is kept alive while this runs; ctx ends if it is lost.
		// ctx carries the hold: etcd applies this write only while the
		// lock is held, however late it arrives.
		lk, _ := etcdlock.FromContext(ctx)
		resp, err := cli.Txn(ctx).If(lk.Guard()).
			Then(clientv3.OpPut("/tenants/7/schema", "v2")).Commit()
		if err != nil {
			return err
		}
		fmt.Println("migrated tenant 7:", resp.Succeeded)
		return nil
	})
	fmt.Println("done:", err)
	// Output:
	// migrated tenant 7: true
	// done: <nil>
}

// A guarded write succeeds only while the lock is held, so a holder that
// stalled past its lease cannot overwrite what the next holder wrote.
func ExampleLock_guard() {
	c, stop := exampleCluster()
	defer stop()
	ctx := context.Background()
	cli := c.Client()
	locker, err := etcdlock.New(cli)
	if err != nil {
		panic(err)
	}
	defer locker.Close()

	lk, err := locker.LockWithOptions(ctx, etcdlock.LockOptions{Key: "config", TTL: 5 * time.Second, AutoRefresh: true})
	if err != nil {
		panic(err)
	}
	write := func(v string) bool {
		resp, err := cli.Txn(ctx).If(lk.Guard()).Then(clientv3.OpPut("/app/config", v)).Commit()
		if err != nil {
			panic(err)
		}
		return resp.Succeeded
	}
	fmt.Println("write while held:", write("v1"))
	lk.Release(ctx)
	fmt.Println("write after release:", write("v2"))
	fmt.Println("token increases with every holder:", lk.Token() > 0)
	// Output:
	// write while held: true
	// write after release: false
	// token increases with every holder: true
}
