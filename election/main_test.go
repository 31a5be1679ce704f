package election_test

import (
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// An etcd peer HTTP handler that a member's shutdown can leave
		// blocked on its storage lock: embedtest's (etcd's) to fix, not
		// election's. It was seen once in a dozen runs after a 3-member
		// cluster closed.
		goleak.IgnoreAnyFunction("go.etcd.io/etcd/server/v3/etcdserver/api/etcdhttp.newPeerHandler.versionHandler.func1"),
	)
}
