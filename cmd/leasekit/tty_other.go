//go:build unix && !linux

package main

import (
	"os"
	"syscall"
)

// sysProcAttr puts the command in a process group of its own. Only Linux
// has a parent-death signal: elsewhere, a command whose leasekit is
// killed runs on, and the next holder can start once the lease expires.
func sysProcAttr(bool) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

// hasTerminal is false: the command's group never takes the terminal
// outside Linux, so an interactive command stops when it reads from it.
func hasTerminal(*os.File) bool { return false }

func takeTerminal(*os.File) {}
