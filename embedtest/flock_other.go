//go:build !unix

package embedtest

import "os"

// Without flock no data directory can be shown to be abandoned: none is
// locked, and sweepDataDirs removes none.

func lockDataDir(string) (*os.File, error) { return nil, nil }

func tryLock(string) (unlock func(), ok bool) { return nil, false }

// processAlive reports true: sockets are swept by age only.
func processAlive(int) bool { return true }
