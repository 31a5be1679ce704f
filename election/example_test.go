package election_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/leasekit/leasekit/election"
	"github.com/leasekit/leasekit/embedtest"
)

// exampleCluster starts an embedded etcd for an example.
func exampleCluster() (*embedtest.Cluster, func()) {
	c, err := embedtest.Start(context.Background())
	if err != nil {
		panic(err)
	}
	return c, func() { c.Close() }
}

// Two candidates take turns: Alice leads, Bob waits in line, and Bob
// leads the moment Alice resigns. Each term is higher than the last, and
// writes guarded by a term fail once it is over.
func ExampleElection_Campaign() {
	ctx := context.Background()
	cluster, stop := exampleCluster() // a real etcd, in-process
	defer stop()
	cli := cluster.Client()

	alice, err := election.New(cli, "reports", election.WithTTL(5*time.Second))
	if err != nil {
		fmt.Println(err)
		return
	}
	bob, err := election.New(cli, "reports", election.WithTTL(5*time.Second))
	if err != nil {
		fmt.Println(err)
		return
	}

	if err := alice.Campaign(ctx, "alice"); err != nil {
		fmt.Println(err)
		return
	}
	first, err := bob.Leader(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("leader: %s\n", first.Value)
	// A leader's writes go through Txn: etcd applies them only while the
	// term lasts.
	if _, err := alice.Txn(ctx, clientv3.OpPut("/reports/owner", "alice")); err != nil {
		fmt.Println(err)
		return
	}

	won := make(chan error, 1)
	go func() { won <- bob.Campaign(ctx, "bob") }() // waits for its turn
	if err := alice.Resign(ctx); err != nil {
		fmt.Println(err)
		return
	}
	if err := <-won; err != nil {
		fmt.Println(err)
		return
	}
	second, err := alice.Leader(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("leader: %s, higher term: %t\n", second.Value, second.Rev > first.Rev)
	_, err = alice.Txn(ctx, clientv3.OpPut("/reports/owner", "alice"))
	fmt.Println("alice's write after resigning:", errors.Is(err, election.ErrNotLeader))

	if err := bob.Resign(ctx); err != nil {
		fmt.Println(err)
		return
	}
	_, err = bob.Leader(ctx)
	fmt.Println("no leader:", errors.Is(err, election.ErrNoLeader))
	// Output:
	// leader: alice
	// leader: bob, higher term: true
	// alice's write after resigning: true
	// no leader: true
}

// Run campaigns, runs the leader's duties, hands over when they return
// and campaigns again, until its context ends. Here the only candidate
// leads twice, then stops.
func ExampleElection_Run() {
	cluster, stop := exampleCluster()
	defer stop()

	e, err := election.New(cluster.Client(), "cron",
		election.WithValue("replica-1"), election.WithTTL(5*time.Second))
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	terms := 0
	err = e.Run(ctx, election.Callbacks{
		OnStartedLeading: func(ctx context.Context) {
			// ctx ends the moment leadership is lost. Leader duties go
			// here; guarded writes fail once leadership is lost.
			terms++
			fmt.Println("started leading, term", terms)
			if _, err := e.Txn(ctx, clientv3.OpPut("/cron/last-run", "replica-1")); err != nil {
				fmt.Println(err)
			}
			if terms == 2 {
				stop()
			}
			// Returning hands leadership to the next candidate.
		},
		OnStoppedLeading: func() { fmt.Println("stopped leading") },
	})
	fmt.Println("Run returned:", err)
	// Output:
	// started leading, term 1
	// stopped leading
	// started leading, term 2
	// stopped leading
	// Run returned: <nil>
}

// OnStoppedLeadingCause says why each term ended; context.Cause of the
// duties' ctx says the same. Here the first term ends when the duties
// return, the second when Run's context ends.
func ExampleCallbacks_cause() {
	cluster, stop := exampleCluster()
	defer stop()

	e, err := election.New(cluster.Client(), "reconciler")
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	terms := 0
	err = e.Run(ctx, election.Callbacks{
		OnStartedLeading: func(ctx context.Context) {
			terms++
			if terms == 2 {
				stop()
				<-ctx.Done()
			}
		},
		OnStoppedLeadingCause: func(cause error) {
			switch {
			case errors.Is(cause, election.ErrLost):
				fmt.Println("lost leadership:", cause)
			case errors.Is(cause, election.ErrResigned):
				fmt.Println("resigned")
			case errors.Is(cause, election.ErrStopped):
				fmt.Println("shutting down:", errors.Is(cause, context.Canceled))
			case errors.Is(cause, election.ErrDutiesReturned):
				fmt.Println("duties done")
			}
		},
	})
	fmt.Println("Run returned:", err)
	// Output:
	// duties done
	// shutting down: true
	// Run returned: <nil>
}

// Observe reports the leader, every change, and "no leader" as the zero
// Leader.
func ExampleElection_Observe() {
	cluster, stop := exampleCluster()
	defer stop()
	cli := cluster.Client()
	ctx, stop := context.WithCancel(context.Background())
	defer stop()

	watcher, err := election.New(cli, "db-primary")
	if err != nil {
		fmt.Println(err)
		return
	}
	candidate, err := election.New(cli, "db-primary")
	if err != nil {
		fmt.Println(err)
		return
	}
	changes := watcher.Observe(ctx)
	show := func() {
		if l := <-changes; l.Rev == 0 {
			fmt.Println("no leader")
		} else {
			fmt.Println("leader:", l.Value)
		}
	}

	show()
	if err := candidate.Campaign(ctx, "10.0.0.1:5432"); err != nil {
		fmt.Println(err)
		return
	}
	show()
	if err := candidate.Proclaim(ctx, "10.0.0.2:5432"); err != nil {
		fmt.Println(err)
		return
	}
	show()
	if err := candidate.Resign(ctx); err != nil {
		fmt.Println(err)
		return
	}
	show()
	// Output:
	// no leader
	// leader: 10.0.0.1:5432
	// leader: 10.0.0.2:5432
	// no leader
}
