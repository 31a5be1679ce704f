// Package embedtest runs a real etcd cluster inside the current process, for
// integration tests, benchmarks and demos that need etcd without installing
// or starting a server.
//
// The most common use, in a test:
//
//	func TestSomething(t *testing.T) {
//		c := embedtest.New(t) // closed when the test ends
//		cli := c.Client()
//		if _, err := cli.Put(t.Context(), "k", "v"); err != nil {
//			t.Fatal(err)
//		}
//	}
//
// Start does the same outside tests. One member starts in about 60ms and
// three in about 150ms (see docs/benchmarks.md).
//
// # Faults
//
// A cluster of several members (WithMembers) can inject the faults that
// coordination code must survive:
//   - Member.Stop, Member.Kill and Member.Restart stop a member gracefully
//     or as a crash, and bring it back with its data;
//   - Member.KillAndWipe loses a member's data with it, and Member.Rejoin
//     replaces it with a fresh member, as an operator would;
//   - Cluster.WaitLeader and Cluster.MoveLeader find and move the etcd
//     leader;
//   - Cluster.Partition and Cluster.Heal cut a member off from its peers;
//   - Cluster.NewProxy puts a TCP proxy in front of a member for a client,
//     to cut that client off silently or slow it down.
//
// After a member crashes, a client may still send a request on its
// connection to it and get Unavailable, and a write that a follower
// forwarded to a crashed leader waits out etcd's request timeout (about
// 5s). Tests that kill members should wait for a new leader (WaitLeader)
// and retry idempotent writes, as production code must.
//
// # TLS
//
// WithTLS makes the members serve clients over TLS and require client
// certificates, from certificates generated in-process when the cluster
// starts. The cluster's own clients use them; TLSFiles gives the CA and a
// client certificate as PEM files for a subprocess (etcdctl --cacert
// --cert --key), and ClientCert issues a certificate for another common
// name, which etcd's auth takes as the user name.
//
// # Auth
//
// EnableAuth turns etcd's authentication on through the client API, as an
// operator would, and returns a root client; AddUser adds a user with a
// role of its own that holds the given grants, and returns a client
// logged in as that user; under WithTLS, NewCertClient is that user known
// by its certificate alone. Passwords are hashed with bcrypt's minimum
// cost, so that logins stay fast under the race detector.
//
// # What embedtest sets, and why
//
// Defaults suit tests rather than production:
//   - fsync off (WithFsync turns it on): writes are several times faster,
//     and a test's data dies with the process anyway;
//   - short raft timing (WithElection changes it): 5ms heartbeats and a
//     50ms election timeout for one member, whose start time is mostly its
//     first election; 20ms and 200ms for several members, slow enough that
//     a loaded 2-core machine running tests under -race does not see
//     spurious elections. etcd's default is 100ms and 1s;
//   - hence a minimum lease TTL of 1s instead of 2s: etcd raises any TTL
//     below 1.5 × the election timeout, rounded up to whole seconds, to
//     that minimum without saying so. Both defaults make it 1s, so a test
//     can ask for a 1s lease and get one;
//   - etcd's strict reconfiguration check off: it refuses to add a member
//     until every peer link has been up for 5s, which would make Rejoin
//     soon after Start wait that long. Tests change membership on purpose.
//
// Clients reach members on 127.0.0.1 only, on ports picked free (Start
// retries if another process takes one first).
//
// # What it writes where
//
// A cluster writes two kinds of files, and Close removes both:
//   - its data, in a directory named embedtest-<pid>-<random> in the
//     temporary directory (os.TempDir: $TMPDIR, else /tmp), or in the
//     directory given to WithDataDir. etcd preallocates 64MB WAL files, so
//     a member's data takes about 123MB on disk; a three-member cluster
//     about 370MB;
//   - the members' peer sockets, named .embedtest-<pid>-<token>.m<i>:1, in
//     the working directory: the package directory under go test. etcd
//     takes a Unix peer URL's host as the socket's path, and a URL host
//     cannot hold a '/', so the sockets can live nowhere else. Members talk
//     to each other over them because over TCP an etcd peer connection can
//     stay busy for 5s after its last request: closing three members took a
//     second more and left goroutines running for seconds after Close,
//     which trips goleak. If the working directory is not writable, members
//     fall back to TCP on 127.0.0.1, with that cost. Do not change the
//     working directory (t.Chdir) while a multi-member cluster runs.
//
// A process that dies before Close (SIGKILL, go test -timeout, a crash)
// cannot remove them, so every Start sweeps what dead processes left:
// data directories in the same parent directory whose cluster's lock
// (an flock on the directory's .lock file, which the kernel drops when
// the process dies) nobody holds, and sockets in the working directory
// whose process is gone and on which nothing listens. Files of running
// processes are left alone, and so are data directories that earlier
// versions of embedtest left (named embedtest-<random>, with no lock;
// remove them by hand). On systems without flock (Windows) data directories are
// not swept. WithLogger's logger reports each removal at info level.
package embedtest
