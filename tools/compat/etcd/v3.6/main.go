// Command etcd is etcd's server, version 3.6.16, built from the Go module
// proxy for leasekit's compatibility suite (make compat).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
