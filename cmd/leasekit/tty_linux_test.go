package main

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"unsafe"

	"github.com/leasekit/leasekit/embedtest"
)

// TestTerminalGoesToTheCommand runs leasekit on a terminal of its own, as
// a shell runs it: the command, in its own process group, gets the
// terminal, so it can read from it (a background group would be stopped
// by SIGTTIN) and Ctrl-C reaches it.
func TestTerminalGoesToTheCommand(t *testing.T) {
	t.Parallel()
	c := embedtest.New(t)
	kids := newChildren(t)
	for _, tc := range []struct {
		name   string
		action []string
		input  string
		want   int
	}{
		{"read", []string{"read"}, "hello\n", 0},
		{"Ctrl-C", []string{"hold"}, "\x03", 128 + int(syscall.SIGINT)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			master, tty := openPTY(t)
			tag := "tty-" + tc.action[0]
			cmd := exec.Command(leasekitBin, cmdline([]string{"lock", ep(c.Endpoints()...), "tty"}, childArgs(tag, tc.action...))...)
			cmd.Env = testEnv(kids)
			cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
			// A session of its own with the terminal as its controlling
			// terminal: leasekit's group is the foreground one.
			cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			tty.Close()
			done := make(chan struct{})
			go func() { io.Copy(io.Discard, master); close(done) }() // echo and messages
			t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait(); master.Close(); <-done })

			kids.await("start", tag)
			if _, err := master.Write([]byte(tc.input)); err != nil {
				t.Fatal(err)
			}
			switch tc.action[0] {
			case "read":
				if ev := kids.await("read", tag); ev.line != "hello" {
					t.Fatalf("the command read %q", ev.line)
				}
			case "hold":
				if ev := kids.await("signal", tag); ev.sig != syscall.SIGINT {
					t.Fatalf("the command got %v", ev.sig)
				}
			}
			cmd.Wait()
			if code := exitCode(cmd.ProcessState); code != tc.want {
				t.Fatalf("leasekit exited %d, want %d", code, tc.want)
			}
		})
	}
}

// openPTY returns a new pseudo-terminal's master and terminal ends.
func openPTY(t *testing.T) (master, tty *os.File) {
	t.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	var unlock int32
	if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, master.Fd(), syscall.TIOCSPTLCK, uintptr(unsafe.Pointer(&unlock))); errno != 0 {
		master.Close()
		t.Skipf("unlock pty: %v", errno)
	}
	var n uint32
	if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, master.Fd(), syscall.TIOCGPTN, uintptr(unsafe.Pointer(&n))); errno != 0 {
		master.Close()
		t.Skipf("pty number: %v", errno)
	}
	tty, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		master.Close()
		t.Skipf("open pty: %v", err)
	}
	return master, tty
}
