// Package embedtest runs a real etcd cluster inside the current process, for
// integration tests, benchmarks and demos that need etcd without installing
// or starting a server.
//
// Members listen on 127.0.0.1 only, on ports picked free, with data in a
// temporary directory. Defaults suit tests: fsync off and short raft ticks,
// which make etcd's minimum lease TTL 1s instead of 2s.
//
// The most common use, in a test:
//
//	func TestSomething(t *testing.T) {
//		c := embedtest.New(t) // closed when the test ends
//		cli := c.Client()
//		if _, err := cli.Put(ctx, "k", "v"); err != nil {
//			t.Fatal(err)
//		}
//	}
//
// A cluster can also inject faults: stop, kill and restart members, and
// more (see Member).
package embedtest
