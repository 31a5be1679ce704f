// Command demo is a narrated tour of leasekit on an embedded etcd.
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/leasekit/leasekit/embedtest"
)

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	start := time.Now()
	c, err := embedtest.Start(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
	defer c.Close()
	fmt.Printf("embedded etcd started in %v at %v\n", time.Since(start).Round(time.Millisecond), c.Endpoints())
}
