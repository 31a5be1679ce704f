//go:build unix

package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/leasekit/leasekit/etcdlock"
)

const lockHelp = `Wait for the lock NAME, run COMMAND while holding it, and release it the
moment COMMAND exits. Waiters are served in the order they came (FIFO),
woken by an etcd watch.

COMMAND runs in a process group of its own with leasekit's stdin, stdout
and stderr, and finds in its environment:
  LEASEKIT_TOKEN  the fencing token: increases from holder to holder
  LEASEKIT_NAME   NAME
  LEASEKIT_KEY    the hold's etcd key
If the lock is lost while COMMAND runs (leasekit cut off from etcd, the
hold broken with unlock --force), COMMAND's group gets SIGTERM at once,
before etcd can expire the lease, and SIGKILL after --kill-after; leasekit
then exits 70. SIGINT, SIGTERM and SIGHUP are passed on to the group.

Flags:
  --try            do not wait: if the lock is taken, exit 75 at once
  --timeout D      wait at most D, then exit 75 (nothing runs)
  --ttl D          lease TTL, whole seconds, at least 1s (default 10s)
  --kill-after D   SIGKILL this long after the SIGTERM of a loss (default 10s)
  --prefix P       etcd key prefix of the locks (default /leasekit/lock/)
`

const semHelp = `Run COMMAND while holding one of the --limit permits of the semaphore
NAME: at most N commands run at once across every leasekit sem of NAME.
Everyone must use the same --limit. The rest is as for leasekit lock
(--try, --timeout, --ttl, --kill-after, the environment, the statuses).
Semaphores live apart from locks: the semaphore "a" and the lock "a" are
unrelated.
`

// holdFlags are the flags of lock and sem.
type holdFlags struct {
	conn      *connFlags
	try       bool
	timeout   time.Duration
	ttl       time.Duration
	killAfter time.Duration
	limit     positiveInt // sem only
}

func parseHold(name string, args []string, sem bool) (*holdFlags, string, []string, error) {
	fs := newFlagSet(name)
	var bad error
	f := &holdFlags{conn: addConn(fs, etcdlock.DefaultPrefix, &bad)}
	fs.BoolVar(&f.try, "try", false, "do not wait")
	fs.DurationVar(&f.timeout, "timeout", 0, "wait at most this long")
	fs.DurationVar(&f.ttl, "ttl", defaultTTL, "lease TTL")
	fs.DurationVar(&f.killAfter, "kill-after", defaultKillAfter, "SIGKILL delay after a loss")
	if sem {
		fs.Var(&f.limit, "limit", "permits")
	}
	lockName, argv, err := parseNamed(fs, args, true, bad)
	switch {
	case err != nil:
	case sem && !f.limit.set:
		err = usagef("--limit N is required")
	case f.try && f.timeout != 0:
		err = usagef("--try and --timeout exclude each other")
	case f.timeout < 0 || f.killAfter < 0:
		err = usagef("--timeout and --kill-after cannot be negative")
	default:
		if err = checkTTL(f.ttl); err == nil {
			err = f.conn.check()
		}
	}
	return f, lockName, argv, err
}

func runLock(ctx context.Context, std stdio, args []string) int {
	return runHold(ctx, std, "lock", args)
}

func runSem(ctx context.Context, std stdio, args []string) int {
	return runHold(ctx, std, "sem", args)
}

// runHold is lock and sem.
func runHold(ctx context.Context, std stdio, cmd string, args []string) int {
	sem := cmd == "sem"
	f, name, argv, err := parseHold(cmd, args, sem)
	if errors.Is(err, errHelp) {
		return printHelp(std, cmd)
	}
	if err != nil {
		return fail(std, cmd, err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sup := &supervisor{std: std, cmdName: cmd, argv: argv, killAfter: f.killAfter}
	stopSignals := forwardSignals(sup, cancel)
	defer stopSignals()

	lg := newLogger(f.conn)
	defer lg.Sync()
	cli, err := dial(ctx, f.conn, lg, f.conn.prefix)
	if sig := sup.stopping(); sig != 0 {
		if err == nil {
			cli.Close()
		}
		return exitSignalled + int(sig)
	}
	if err != nil {
		return fail(std, cmd, err)
	}
	defer cli.Close()
	locker, err := etcdlock.New(cli, etcdlock.WithPrefix(f.conn.prefix), etcdlock.WithLogger(lg),
		// Only the program's name: arguments can hold secrets, and
		// everyone who may read the prefix sees the metadata.
		etcdlock.WithMetadata(map[string]string{"cmd": filepath.Base(argv[0])}))
	if err != nil {
		return fail(std, cmd, usageError{err.Error()})
	}
	lost := false
	defer func() {
		// After a loss nothing is left to give back: the key is gone, or
		// etcd is out of reach and will expire the lease. Closing would
		// only wait for etcd.
		if !lost {
			locker.Close()
		}
	}()

	opts := etcdlock.LockOptions{Key: name, TTL: f.ttl, AutoRefresh: true, Timeout: f.timeout}
	var lk etcdlock.Lock
	ok := true
	if sem {
		var s *etcdlock.Semaphore
		if s, err = locker.Semaphore(name, f.limit.n); err == nil {
			if f.try {
				lk, ok, err = s.TryAcquireWithOptions(ctx, etcdlock.LockOptions{TTL: f.ttl, AutoRefresh: true})
			} else {
				opts.Key = ""
				lk, err = s.AcquireWithOptions(ctx, opts)
			}
		}
	} else if f.try {
		lk, ok, err = locker.TryLockWithOptions(ctx, opts)
	} else {
		lk, err = locker.LockWithOptions(ctx, opts)
	}
	what, holdWhat := "lock", "lock"
	if sem {
		what, holdWhat = "semaphore", "permit"
	}
	switch {
	case sup.stopping() != 0:
		if lk != nil {
			releaseBounded(std, cmd, f.conn, lk)
		}
		return exitSignalled + int(sup.stopping())
	case err == nil && !ok:
		fmt.Fprintf(std.err, "leasekit %s: %s %q is taken; nothing run (--try)\n", cmd, what, name)
		return exitNotTaken
	case errors.Is(err, context.DeadlineExceeded) && f.timeout > 0:
		fmt.Fprintf(std.err, "leasekit %s: %s %q not acquired within --timeout %v; nothing run\n", cmd, what, name, f.timeout)
		return exitNotTaken
	case errors.Is(err, etcdlock.ErrInvalidKey), errors.Is(err, etcdlock.ErrLimitMismatch):
		return fail(std, cmd, usageError{err.Error()})
	case err != nil:
		return fail(std, cmd, describe(err, f.conn, f.conn.prefix))
	}
	noteTTL(std, cmd, f.ttl, lk.TTL())

	// The guard compares the create revision of the hold's key.
	guard := lk.Guard()
	h := hold{what: holdWhat, name: name, token: lk.Token(), key: string(guard.KeyBytes()), lost: lk.Done(), cause: lk.Err}
	o := sup.run(h)
	if lost = o.lost; !lost {
		releaseBounded(std, cmd, f.conn, lk)
	}
	return o.status
}

// releaseBounded releases lk within --command-timeout.
func releaseBounded(std stdio, cmd string, c *connFlags, lk etcdlock.Lock) {
	ctx, cancel := context.WithTimeout(context.Background(), c.commandTimeout)
	defer cancel()
	err := lk.Release(ctx)
	if err != nil && !errors.Is(err, etcdlock.ErrNotHeld) {
		fmt.Fprintf(std.err, "leasekit %s: release: %s; the lock is free once its lease expires (TTL %v)\n", cmd, oneLine(err.Error()), lk.TTL())
	}
}

// noteTTL says so when etcd granted more than --ttl asked.
func noteTTL(std stdio, cmd string, asked, granted time.Duration) {
	if granted > asked.Round(time.Second) && granted > asked {
		fmt.Fprintf(std.err, "leasekit %s: etcd granted a TTL of %v for the %v asked (its minimum)\n", cmd, granted, asked)
	}
}

// forwardSignals passes SIGINT, SIGTERM and SIGHUP to the supervised
// command; one that comes while no command runs calls stop instead.
// The returned function ends the forwarding.
func forwardSignals(sup *supervisor, stop func()) func() {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		for {
			select {
			case s := <-sigs:
				if !sup.forward(s.(syscall.Signal)) {
					stop()
				}
			case <-done:
				return
			}
		}
	}()
	return func() {
		signal.Stop(sigs)
		close(done)
		<-finished
	}
}
