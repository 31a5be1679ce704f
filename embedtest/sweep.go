package embedtest

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// What a cluster writes, and what a later Start sweeps when the process
// that wrote it died before Close (a SIGKILL, go test -timeout, a crash):
//
//   - a data directory, dataDirPrefix + "<pid>-<random>", in the
//     temporary directory or WithDataDir's. The cluster holds an
//     exclusive lock (flock) on its lockFile from Start to Close; the
//     kernel drops the lock when the process dies, however it dies, so a
//     directory whose lock can be taken belongs to nobody.
//   - peer sockets, socketPrefix + "<pid>-<token>.m<i>:1", in the working
//     directory. One whose process is gone and on which nothing listens
//     belongs to nobody.
const (
	dataDirPrefix = "embedtest-"
	socketPrefix  = ".embedtest-"
	lockFile      = ".lock"
)

// newDataDir creates the cluster's data directory under parent (the
// temporary directory if empty) and locks it. Close the returned file (nil
// where file locks are not supported) to unlock it, after removing the
// directory.
func newDataDir(parent string) (dir string, lock *os.File, err error) {
	dir, err = os.MkdirTemp(parent, fmt.Sprintf("%s%d-", dataDirPrefix, os.Getpid()))
	if err != nil {
		return "", nil, fmt.Errorf("embedtest: data dir: %w", err)
	}
	lock, err = lockDataDir(dir)
	if err != nil {
		os.RemoveAll(dir)
		return "", nil, fmt.Errorf("embedtest: lock data dir: %w", err)
	}
	return dir, lock, nil
}

// sweepDataDirs removes the data directories under parent (the temporary
// directory if empty) whose cluster's process is gone: those whose lock
// nobody holds. Directories without a lock file, such as those of older
// versions of embedtest, are left alone. It returns what it removed.
func sweepDataDirs(parent string) []string {
	if parent == "" {
		parent = os.TempDir()
	}
	entries, _ := filepath.Glob(filepath.Join(parent, dataDirPrefix+"*"))
	var removed []string
	for _, dir := range entries {
		unlock, ok := tryLock(filepath.Join(dir, lockFile))
		if !ok {
			continue
		}
		if os.RemoveAll(dir) == nil {
			removed = append(removed, dir)
		}
		unlock()
	}
	return removed
}

// socketName returns the file name of member name's peer socket.
func socketName(token, name string) string {
	return fmt.Sprintf("%s%d-%s.%s", socketPrefix, os.Getpid(), token, name)
}

// staleAge is how old a leftover socket of unknown owner must be before
// Start removes it. A member creates its socket and listens on it in the
// same instant, so an old one that refuses connections was left by a
// process that died.
const staleAge = time.Minute

// sweepSockets removes the peer sockets in the working directory that
// processes killed before Close left behind: those that refuse
// connections and whose process, named in the file name, is gone (or,
// for names without a process ID, that are over staleAge old). It
// returns what it removed.
func sweepSockets() []string {
	names, _ := filepath.Glob(socketPrefix + "*")
	var removed []string
	for _, name := range names {
		fi, err := os.Lstat(name)
		if err != nil {
			continue
		}
		pid, hasPID := socketPID(name)
		switch {
		case hasPID && pid == os.Getpid():
			continue
		case hasPID && processAlive(pid):
			continue
		case !hasPID && time.Since(fi.ModTime()) < staleAge:
			continue
		}
		if fi.Mode()&os.ModeSocket != 0 {
			conn, err := net.DialTimeout("unix", name, time.Second)
			if err == nil {
				conn.Close()
				continue
			}
			if !errors.Is(err, syscall.ECONNREFUSED) {
				continue
			}
		}
		if os.Remove(name) == nil {
			removed = append(removed, name)
		}
	}
	return removed
}

// socketPID returns the process ID in a socket name socketName made.
func socketPID(name string) (int, bool) {
	rest := strings.TrimPrefix(name, socketPrefix)
	s, _, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, false
	}
	pid, err := strconv.Atoi(s)
	return pid, err == nil && pid > 0
}
