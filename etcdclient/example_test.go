package etcdclient_test

import (
	"context"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/leasekit/leasekit/embedtest"
	"github.com/leasekit/leasekit/etcdclient"
)

// Dial etcd with the recommended settings. In a service, pass your
// cluster's endpoints and, to see etcd's client logs, your logger.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	etcd, err := embedtest.Start(ctx)
	if err != nil {
		fmt.Println("start:", err)
		return
	}
	defer etcd.Close()

	cfg := etcdclient.Config(etcd.Endpoints()...)
	// cfg.Logger = logger // etcd's client logs; the default discards them
	cli, err := clientv3.New(cfg)
	if err != nil {
		fmt.Println("dial:", err)
		return
	}
	defer cli.Close()

	if _, err := cli.Put(ctx, "greeting", "hello"); err != nil {
		fmt.Println("put:", err)
		return
	}
	resp, err := cli.Get(ctx, "greeting")
	if err != nil {
		fmt.Println("get:", err)
		return
	}
	fmt.Println(string(resp.Kvs[0].Value))
	// Output: hello
}
