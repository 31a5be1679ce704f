package embedtest

import "go.uber.org/goleak"

// LeakOptions returns the goleak options a package whose tests use
// embedtest needs, so that its TestMain can still check for leaks:
//
//	func TestMain(m *testing.M) { goleak.VerifyTestMain(m, embedtest.LeakOptions()...) }
//
// It ignores one goroutine only: etcd's peer "version" HTTP handler, which
// a member's shutdown can leave blocked on the storage lock of its closed
// backend. It is etcd's, started by a peer's request, and cannot be stopped
// from outside.
func LeakOptions() []goleak.Option {
	return []goleak.Option{
		goleak.IgnoreAnyFunction("go.etcd.io/etcd/server/v3/etcdserver/api/etcdhttp.newPeerHandler.versionHandler.func1"),
	}
}
