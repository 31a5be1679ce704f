//go:build unix

package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"runtime"
	"sync"
	"syscall"
	"time"
)

// child is the command, running in a process group of its own.
type child struct {
	cmd  *exec.Cmd
	pgid int
	fg   bool          // its group has the terminal
	done chan struct{} // closed once it has exited and been waited for
}

// startChild starts argv with env added to leasekit's own environment and
// leasekit's stdin, stdout and stderr.
func startChild(argv, env []string, std stdio) (*child, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = std.in, std.out, std.err
	fg := hasTerminal(std.in)
	cmd.SysProcAttr = sysProcAttr(fg)
	ch := &child{cmd: cmd, fg: fg, done: make(chan struct{})}
	started := make(chan error, 1)
	go func() {
		// Linux sends the parent-death signal when the thread that
		// started the child exits, not when the process does; the Go
		// runtime may end idle threads. Keep this goroutine on its thread
		// until the command has exited.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		cmd.Wait() // its status is in cmd.ProcessState
		close(ch.done)
	}()
	if err := <-started; err != nil {
		return nil, err
	}
	ch.pgid = cmd.Process.Pid
	return ch, nil
}

// signal sends sig to the command's process group. A group that is gone
// (ESRCH) needs no signal.
func (ch *child) signal(sig syscall.Signal) {
	syscall.Kill(-ch.pgid, sig)
}

// status is the command's exit status as a shell reports it: 128+n if
// signal n killed it.
func (ch *child) status() int {
	st := ch.cmd.ProcessState
	if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return exitSignalled + int(ws.Signal())
	}
	return st.ExitCode()
}

// startStatus is the exit status for a command that could not be
// started, as a shell gives it.
func startStatus(err error) int {
	switch {
	case errors.Is(err, exec.ErrNotFound), errors.Is(err, fs.ErrNotExist):
		return exitNotFound
	case errors.Is(err, fs.ErrPermission), errors.Is(err, syscall.ENOEXEC), errors.Is(err, syscall.EISDIR):
		return exitNotExec
	}
	return exitStart
}

// hold is what the command runs under: a lock, a permit or a term.
type hold struct {
	what  string // "lock", "permit", "leadership"
	name  string
	token int64
	key   string
	// lost is closed when the hold ends before the command does.
	lost <-chan struct{}
	// cause says why it ended.
	cause func() error
}

// env is what the command finds in its environment.
func (h hold) env() []string {
	return []string{
		fmt.Sprintf("LEASEKIT_TOKEN=%d", h.token),
		"LEASEKIT_NAME=" + h.name,
		"LEASEKIT_KEY=" + h.key,
	}
}

// supervisor runs the command under one hold at a time and passes
// leasekit's signals on to it.
type supervisor struct {
	std       stdio
	cmdName   string // the leasekit command, for messages
	argv      []string
	killAfter time.Duration

	mu      sync.Mutex
	cur     *child
	stopSig syscall.Signal // the first signal leasekit got; 0 if none
	idle    bool           // a signal came while no command ran
}

// forward passes sig to the running command, if any. Either way,
// leasekit stops after that command: a signal never starts another. It
// reports whether a command got it.
func (s *supervisor) forward(sig syscall.Signal) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopSig == 0 {
		s.stopSig = sig
	}
	if s.cur != nil {
		s.cur.signal(sig)
		return true
	}
	s.idle = true
	return false
}

// stopped returns the first signal leasekit got, and whether a signal
// came while no command ran.
func (s *supervisor) stopped() (syscall.Signal, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopSig, s.idle
}

// stopping returns the signal that asked leasekit to stop, or 0.
func (s *supervisor) stopping() syscall.Signal {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopSig
}

// outcome is how a run of the command ended.
type outcome struct {
	status  int  // the exit status leasekit should give
	ran     bool // the command started
	lost    bool // the hold ended before the command did
	stopped bool // a signal to leasekit came first; nothing ran
}

// run starts the command under h and waits for it to exit. If h is lost
// first, the command's group gets SIGTERM at once and SIGKILL after
// killAfter.
func (s *supervisor) run(h hold) outcome {
	s.mu.Lock()
	if sig := s.stopSig; sig != 0 {
		s.mu.Unlock()
		return outcome{status: exitSignalled + int(sig), stopped: true}
	}
	ch, err := startChild(s.argv, h.env(), s.std)
	if err != nil {
		s.mu.Unlock()
		fmt.Fprintf(s.std.err, "leasekit %s: cannot run %s: %s\n", s.cmdName, s.argv[0], oneLine(err.Error()))
		return outcome{status: startStatus(err)}
	}
	s.cur = ch
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.cur = nil
		s.mu.Unlock()
		if ch.fg {
			takeTerminal(s.std.in)
		}
	}()

	lost := h.lost
	var kill <-chan time.Time
	for {
		select {
		case <-ch.done:
			o := outcome{status: ch.status(), ran: true, lost: lost == nil}
			if o.lost {
				fmt.Fprintf(s.std.err, "leasekit %s: the command exited with status %d after the %s was lost\n", s.cmdName, o.status, h.what)
				o.status = exitLost
			}
			return o
		case <-lost:
			lost = nil
			ch.signal(syscall.SIGTERM)
			fmt.Fprintf(s.std.err, "leasekit %s: %s %q lost (token %d): %s; sent SIGTERM to the command, SIGKILL in %v\n",
				s.cmdName, h.what, h.name, h.token, oneLine(fmt.Sprint(h.cause())), s.killAfter)
			timer := time.NewTimer(s.killAfter)
			defer timer.Stop()
			kill = timer.C
		case <-kill:
			kill = nil
			ch.signal(syscall.SIGKILL)
			fmt.Fprintf(s.std.err, "leasekit %s: the command outlived --kill-after %v; sent SIGKILL\n", s.cmdName, s.killAfter)
		}
	}
}
