package main

import (
	"os"
	"os/signal"
	"syscall"
	"unsafe"
)

// sysProcAttr puts the command in a process group of its own, in the
// terminal's foreground if fg, and has the kernel SIGKILL it if leasekit
// dies, so that it cannot run on beside the next holder.
func sysProcAttr(fg bool) *syscall.SysProcAttr {
	a := &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if fg {
		a.Foreground, a.Ctty = true, 0
	}
	return a
}

// hasTerminal reports whether in is leasekit's controlling terminal and
// leasekit's process group has it: the command then gets it instead, so
// that it can read from it and Ctrl-C reaches it.
func hasTerminal(in *os.File) bool {
	if in == nil || in.Fd() != 0 {
		return false
	}
	var pgrp int32
	if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, 0, syscall.TIOCGPGRP, uintptr(unsafe.Pointer(&pgrp))); errno != 0 {
		return false
	}
	return int(pgrp) == syscall.Getpgrp()
}

// takeTerminal gives the terminal back to leasekit's process group once
// the command has exited.
func takeTerminal(*os.File) {
	// A background group that sets the foreground group gets SIGTTOU.
	signal.Ignore(syscall.SIGTTOU)
	defer signal.Reset(syscall.SIGTTOU)
	pgrp := int32(syscall.Getpgrp())
	syscall.Syscall(syscall.SYS_IOCTL, 0, syscall.TIOCSPGRP, uintptr(unsafe.Pointer(&pgrp)))
}
