//go:build unix

package embedtest

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
)

// lockDataDir creates dir's lock file and takes an exclusive lock on it,
// which the kernel releases when the file is closed or the process dies.
// It locks the file under another name and then renames it: a sweep only
// opens lockFile, so it never takes the lock of a directory being created.
func lockDataDir(dir string) (*os.File, error) {
	tmp := filepath.Join(dir, lockFile+".new")
	f, err := os.Create(tmp)
	if err != nil {
		return nil, err
	}
	if err := flock(f); err != nil {
		f.Close()
		return nil, err
	}
	if err := os.Rename(tmp, filepath.Join(dir, lockFile)); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// tryLock takes the lock on the lock file at path if nobody holds it.
func tryLock(path string) (unlock func(), ok bool) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, false
	}
	if flock(f) != nil {
		f.Close()
		return nil, false
	}
	return func() { f.Close() }, true
}

// flock takes an exclusive lock on f without waiting.
func flock(f *os.File) error {
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if !errors.Is(err, syscall.EINTR) {
			return err
		}
	}
}

// processAlive reports whether a process with this ID exists. A process
// of another user counts (EPERM).
func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
