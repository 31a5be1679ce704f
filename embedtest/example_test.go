package embedtest_test

import (
	"context"
	"fmt"
	"time"

	"github.com/leasekit/leasekit/embedtest"
)

// Start a single-member cluster, write a key and read it back. In a test,
// embedtest.New(t) does the same and closes the cluster when the test ends.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	c, err := embedtest.Start(ctx)
	if err != nil {
		fmt.Println("start:", err)
		return
	}
	defer c.Close()

	if _, err := c.Client().Put(ctx, "greeting", "hello, etcd"); err != nil {
		fmt.Println("put:", err)
		return
	}
	resp, err := c.Client().Get(ctx, "greeting")
	if err != nil {
		fmt.Println("get:", err)
		return
	}
	fmt.Println(string(resp.Kvs[0].Value))
	// Output: hello, etcd
}

// Cut a member off from its peers, see the others elect a leader, and heal.
func ExampleCluster_Partition() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	c, err := embedtest.Start(ctx, embedtest.WithMembers(3))
	if err != nil {
		fmt.Println("start:", err)
		return
	}
	defer c.Close()

	lead, err := c.WaitLeader(ctx)
	if err != nil {
		fmt.Println("leader:", err)
		return
	}
	if err := c.Partition(lead); err != nil {
		fmt.Println("partition:", err)
		return
	}
	next, err := c.WaitLeader(ctx)
	if err != nil {
		fmt.Println("leader:", err)
		return
	}
	fmt.Println("new leader elected:", next != lead)
	if err := c.Heal(lead); err != nil {
		fmt.Println("heal:", err)
		return
	}
	// Output: new leader elected: true
}
