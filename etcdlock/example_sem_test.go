package etcdlock_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/leasekit/leasekit/etcdlock"
)

// A semaphore caps concurrency across replicas: here, at most two calls
// in flight to a partner API, whichever replica makes them.
func ExampleSemaphore() {
	ctx := context.Background()
	c, stop := exampleCluster() // a real etcd, in-process
	defer stop()

	// Two replicas, each with its Locker.
	var sems []*etcdlock.Semaphore
	for range 2 {
		l, err := etcdlock.New(c.Client())
		if err != nil {
			log.Fatal(err)
		}
		defer l.Close()
		s, err := l.Semaphore("partner-api", 2)
		if err != nil {
			log.Fatal(err)
		}
		sems = append(sems, s)
	}

	first, err := sems[0].Acquire(ctx, 10*time.Second)
	if err != nil {
		log.Fatal(err)
	}
	second, err := sems[1].Acquire(ctx, 10*time.Second)
	if err != nil {
		log.Fatal(err)
	}
	_, ok, err := sems[0].TryAcquire(ctx, 10*time.Second)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("a third call may start:", ok)

	// A third call waits for a permit; the first release lets it in.
	third := make(chan etcdlock.Lock)
	go func() {
		p, err := sems[1].AcquireWithOptions(ctx, etcdlock.LockOptions{TTL: 10 * time.Second, Timeout: 10 * time.Second})
		if err != nil {
			log.Fatal(err)
		}
		third <- p
	}()
	first.Release(ctx)
	p := <-third
	fmt.Println("the third call got a permit after the first:", p.Token() > second.Token())

	// Every user of the name must agree on its limit.
	l, err := etcdlock.New(c.Client())
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()
	five, err := l.Semaphore("partner-api", 5)
	if err != nil {
		log.Fatal(err)
	}
	_, err = five.Acquire(ctx, 10*time.Second)
	fmt.Println("limit 5 refused:", errors.Is(err, etcdlock.ErrLimitMismatch))

	p.Release(ctx)
	second.Release(ctx)
	// Output:
	// a third call may start: false
	// the third call got a permit after the first: true
	// limit 5 refused: true
}

// Readers share an RWMutex; a writer holds it alone. Waiters are served in
// order, so a reader that comes after a waiting writer waits for it.
func ExampleRWMutex() {
	ctx := context.Background()
	c, stop := exampleCluster()
	defer stop()
	cli := c.Client()
	l, err := etcdlock.New(cli)
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()
	m, err := l.RWMutex("config")
	if err != nil {
		log.Fatal(err)
	}

	r1, err := m.RLock(ctx, 10*time.Second)
	if err != nil {
		log.Fatal(err)
	}
	r2, ok, err := m.TryRLock(ctx, 10*time.Second)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("two readers at once:", ok)
	_, ok, err = m.TryLock(ctx, 10*time.Second)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("a writer may start:", ok)
	r1.Release(ctx)
	r2.Release(ctx)

	w, err := m.Lock(ctx, 10*time.Second)
	if err != nil {
		log.Fatal(err)
	}
	_, ok, err = m.TryRLock(ctx, 10*time.Second)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("a reader may start:", ok)
	// Write only while the write lock is held.
	resp, err := cli.Txn(ctx).If(w.Guard()).Then(clientv3.OpPut("/config/v", "2")).Commit()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("writer wrote:", resp.Succeeded)
	w.Release(ctx)

	r3, err := m.RLock(ctx, 10*time.Second)
	if err != nil {
		log.Fatal(err)
	}
	got, err := cli.Get(ctx, "/config/v")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("reader sees:", string(got.Kvs[0].Value))
	r3.Release(ctx)
	// Output:
	// two readers at once: true
	// a writer may start: false
	// a reader may start: false
	// writer wrote: true
	// reader sees: 2
}
