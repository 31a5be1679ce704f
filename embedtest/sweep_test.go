package embedtest_test

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/leasekit/leasekit/embedtest"
)

// helperEnv makes TestHelperCluster run a cluster for TestSweep: its value
// is the data directory to use.
const helperEnv = "EMBEDTEST_HELPER_DATA_DIR"

// TestHelperCluster is not a test: run by TestSweep as a child process, it
// starts a three-member cluster, says so on stdout and waits, until stdin
// closes or it is killed.
func TestHelperCluster(t *testing.T) {
	dir := os.Getenv(helperEnv)
	if dir == "" {
		t.Skip("a helper process for TestSweep")
	}
	c := embedtest.New(t, embedtest.WithMembers(3), embedtest.WithDataDir(dir))
	fmt.Printf("ready %d\n", c.Members())
	io.Copy(io.Discard, os.Stdin)
}

// A cluster's data directory and peer sockets outlive a process killed
// before Close; the next Start removes them, and leaves alone those of a
// process still running.
func TestSweep(t *testing.T) {
	if _, err := os.Stat("/proc/self"); err != nil {
		t.Skip("needs a Unix system")
	}
	data := t.TempDir()
	work := t.TempDir()
	// Peer sockets go in the working directory: the child's and, for the
	// sweep, ours.
	t.Chdir(work)

	bin, err := os.Executable()
	require.NoError(t, err)
	cmd := exec.Command(bin, "-test.run=^TestHelperCluster$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperEnv+"="+data)
	cmd.Dir = work
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	defer stdin.Close()
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	ready := make(chan string, 1)
	exited := make(chan error, 1)
	go func() {
		r := bufio.NewReader(stdout)
		line, _ := r.ReadString('\n')
		ready <- line
		// Read to EOF before Wait, which closes the pipe.
		io.Copy(io.Discard, r)
		exited <- cmd.Wait()
	}()
	defer func() {
		cmd.Process.Kill()
		<-exited
	}()

	// Wait for the child's cluster, with a deadline.
	select {
	case line := <-ready:
		require.Equal(t, "ready 3\n", line)
	case <-time.After(60 * time.Second):
		require.FailNow(t, "helper did not start its cluster")
	}
	left := func() (dirs, sockets []string) {
		dirs, _ = filepath.Glob(filepath.Join(data, "embedtest-*"))
		sockets, _ = filepath.Glob(filepath.Join(work, ".embedtest-*"))
		return dirs, sockets
	}
	dirs, sockets := left()
	require.Len(t, dirs, 1, "the child's data directory")
	require.Len(t, sockets, 3, "the child's peer sockets")
	require.Contains(t, filepath.Base(dirs[0]), fmt.Sprint(cmd.Process.Pid), "named by the process")

	// A live process's files stay.
	c := embedtest.New(t, embedtest.WithDataDir(data))
	require.NoError(t, c.Close())
	d2, s2 := left()
	require.Equal(t, dirs, d2)
	require.Equal(t, sockets, s2)

	require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
	<-exited
	exited <- nil // for the deferred kill
	d3, s3 := left()
	require.Equal(t, dirs, d3, "a killed process leaves its data behind")
	require.Equal(t, sockets, s3, "and its sockets")

	c = embedtest.New(t, embedtest.WithDataDir(data))
	require.NoError(t, c.Close())
	d4, s4 := left()
	require.Empty(t, d4, "Start removes the data a dead process left")
	require.Empty(t, s4, "and its sockets")
}
