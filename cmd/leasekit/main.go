//go:build unix

// Command leasekit runs a command under an etcd lock, as the leader of an
// election or under a semaphore, and inspects or breaks locks, from the
// shell:
//
//	leasekit lock [flags] NAME -- COMMAND [ARG...]
//	leasekit elect [flags] NAME -- COMMAND [ARG...]
//	leasekit sem [flags] --limit N NAME -- COMMAND [ARG...]
//	leasekit inspect [--json] NAME
//	leasekit leader [--watch] NAME
//	leasekit unlock --force NAME
//	leasekit etcd [--data-dir D] [--listen 127.0.0.1:2379]
//	leasekit version
//	leasekit help [COMMAND]
//
// The command runs in a process group of its own, with LEASEKIT_TOKEN
// (the fencing token), LEASEKIT_NAME and LEASEKIT_KEY in its environment.
// If the lock is lost, the group gets SIGTERM before etcd can expire the
// lease, so before anyone else can take the lock, and SIGKILL after
// --kill-after. SIGINT, SIGTERM and SIGHUP sent to leasekit are passed to
// the group; once the command exits, the lock is released at once. On
// Linux the command is killed if leasekit itself dies.
//
// Exit statuses: the command's own, or 128+n if signal n killed it; 64
// for a usage error; 69 when etcd cannot be reached or refuses (TLS,
// auth, permission); 70 when the lock, permit or leadership was lost
// while the command ran; 71 when the command could not be started for a
// reason other than the two below; 75 when --try or --timeout did not get
// the lock (nothing ran); 126 when the command is not executable; 127
// when it is not found; 1 from leader and unlock when there is no
// leader or holder. `leasekit help` says more.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
)

// Exit statuses leasekit uses itself. Everything else is the command's.
const (
	exitOK        = 0
	exitNone      = 1   // inspect, leader, unlock: nobody holds or leads
	exitUsage     = 64  // EX_USAGE: bad flags or arguments
	exitEtcd      = 69  // EX_UNAVAILABLE: etcd unreachable, or it refused
	exitLost      = 70  // the hold was lost while the command ran
	exitStart     = 71  // EX_OSERR: the command could not be started
	exitNotTaken  = 75  // EX_TEMPFAIL: --try or --timeout; nothing ran
	exitNotExec   = 126 // the command is not executable, as in a shell
	exitNotFound  = 127 // the command is not found, as in a shell
	exitSignalled = 128 // plus the signal's number
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// stdio is where a command reads and writes.
type stdio struct {
	in       *os.File
	out, err io.Writer
}

// command is one subcommand.
type command struct {
	name    string
	summary string
	usage   string // the synopsis, after "leasekit "
	help    string // what it does, for `leasekit help NAME`
	run     func(ctx context.Context, std stdio, args []string) int
}

// commands is filled by init to break the cycle through help.
var commands []command

func init() {
	commands = []command{
		{name: "lock", summary: "run a command while holding a lock", usage: "lock [flags] NAME -- COMMAND [ARG...]", help: lockHelp, run: runLock},
		{name: "elect", summary: "run a command while leading an election", usage: "elect [flags] NAME -- COMMAND [ARG...]", help: electHelp, run: runElect},
		{name: "sem", summary: "run a command while holding one of N permits", usage: "sem [flags] --limit N NAME -- COMMAND [ARG...]", help: semHelp, run: runSem},
		{name: "inspect", summary: "show a lock's holder and waiters, an election's leader and candidates", usage: "inspect [flags] NAME", help: inspectHelp, run: runInspect},
		{name: "leader", summary: "print an election's leader, or follow it", usage: "leader [flags] NAME", help: leaderHelp, run: runLeader},
		{name: "unlock", summary: "break a lock held by a dead or stuck holder", usage: "unlock --force [flags] NAME", help: unlockHelp, run: runUnlock},
		{name: "etcd", summary: "run a single-member etcd in the foreground, to try leasekit", usage: "etcd [--data-dir D] [--listen 127.0.0.1:2379]", help: etcdHelp, run: runEtcd},
		{name: "version", summary: "print leasekit's version", usage: "version", help: "Print the version of leasekit, of Go and of the etcd client it was built with.\n", run: runVersion},
		{name: "help", summary: "explain a command, the common flags and the exit statuses", usage: "help [COMMAND]", help: "Print the help of COMMAND, or the overview.\n", run: runHelp},
	}
}

// run is main without the process: it returns the exit status.
func run(ctx context.Context, args []string, in *os.File, out, errw io.Writer) int {
	std := stdio{in: in, out: out, err: errw}
	if len(args) == 0 {
		fmt.Fprintln(errw, "leasekit: missing command; see leasekit help")
		return exitUsage
	}
	switch args[0] {
	case "-h", "-help", "--help":
		return runHelp(ctx, std, nil)
	case "-version", "--version":
		return runVersion(ctx, std, nil)
	}
	c, ok := lookup(args[0])
	if !ok {
		fmt.Fprintf(errw, "leasekit: unknown command %q; see leasekit help\n", args[0])
		return exitUsage
	}
	return c.run(ctx, std, args[1:])
}

func lookup(name string) (command, bool) {
	for _, c := range commands {
		if c.name == name {
			return c, true
		}
	}
	return command{}, false
}

// usageError is a bad command line: exit status 64, one line on stderr.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return usageError{fmt.Sprintf(format, args...)}
}

// fail reports err on one line and returns the exit status it calls
// for: 64 for a usage error, else 69 (etcd unreachable or refusing).
func fail(std stdio, cmd string, err error) int {
	fmt.Fprintf(std.err, "leasekit %s: %s\n", cmd, oneLine(err.Error()))
	if errors.As(err, new(usageError)) {
		return exitUsage
	}
	return exitEtcd
}
