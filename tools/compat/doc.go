// Package compat is leasekit's compatibility suite: it runs the lock,
// election and rate-limit contracts against real etcd server processes
// of the versions leasekit supports, including a member killed and
// restarted, quorum lost and regained, and authentication.
//
// It is a module of its own, so that the etcd servers it builds (under
// etcd/v3.x, each a tiny main around etcd's etcdmain at one version, with
// its own go.mod) never touch leasekit's go.mod. Run it from the
// repository root:
//
//	make compat                      # every version
//	make compat COMPAT_VERSIONS=3.7  # one
//
// make compat builds each server from the Go module proxy into
// tools/compat/.bin (ignored by git) and runs this package's tests with
// LEASEKIT_COMPAT_ETCD set to that binary. Without it the tests skip.
//
// Each run starts three members on 127.0.0.1 with etcd's defaults: fsync
// on, 100ms heartbeat, 1s election timeout. Data and logs go under the
// test's temporary directory; set LEASEKIT_COMPAT_KEEP_LOGS=dir to keep
// the members' logs there.
package compat
