//go:build !unix

package main

import (
	"fmt"
	"os"
)

// leasekit needs process groups and POSIX signals.
func main() {
	fmt.Fprintln(os.Stderr, "leasekit: runs on Unix systems only")
	os.Exit(71)
}
