//go:build unix

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/leasekit/leasekit/election"
)

const electHelp = `Campaign in the election NAME and run COMMAND while this instance leads.
When COMMAND exits, resign, which hands leadership to the next candidate
at once; then campaign again (the default) or, with --once, exit with
COMMAND's status. Candidates lead in the order they campaigned.

COMMAND's environment, process group and signals are as for leasekit
lock; LEASEKIT_TOKEN is the term, which increases from leader to leader.
If leadership is lost while COMMAND runs, its group gets SIGTERM at once
and SIGKILL after --kill-after; with --once leasekit then exits 70,
without it campaigns again. A signal to leasekit is passed to COMMAND, and
leasekit exits once COMMAND has (or at once, with 128+signal, when it is
not leading).

Flags:
  --value V        what leasekit leader shows while this instance leads
                   (default host/pid)
  --once           lead once, then exit with COMMAND's status
  --ttl D          lease TTL: how long a dead leader keeps leadership
                   (default 10s)
  --kill-after D   SIGKILL this long after the SIGTERM of a loss (default 10s)
  --prefix P       etcd key prefix of the elections (default /leasekit/election/)
`

const leaderHelp = `Print the leader of the election NAME: its value and term, or "no
leader" (status 1). With --watch, print the leader and then every change,
"no leader" included, until interrupted. With --json, print one JSON
object per line: {"leader":true,"value":"...","term":123} or
{"leader":false}.
`

func runElect(ctx context.Context, std stdio, args []string) int {
	fs := newFlagSet("elect")
	var bad error
	conn := addConn(fs, election.DefaultPrefix, &bad)
	value := fs.String("value", "", "the leader's value")
	once := fs.Bool("once", false, "lead once")
	ttl := fs.Duration("ttl", defaultTTL, "lease TTL")
	killAfter := fs.Duration("kill-after", defaultKillAfter, "SIGKILL delay after a loss")
	name, argv, err := parseNamed(fs, args, true, bad)
	if errors.Is(err, errHelp) {
		return printHelp(std, "elect")
	}
	if err == nil {
		err = checkTTL(*ttl)
	}
	if err == nil && *killAfter < 0 {
		err = usagef("--kill-after cannot be negative")
	}
	if err == nil {
		err = conn.check()
	}
	if err != nil {
		return fail(std, "elect", err)
	}

	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	sup := &supervisor{std: std, cmdName: "elect", argv: argv, killAfter: *killAfter}
	stopSignals := forwardSignals(sup, stopRun)
	defer stopSignals()

	lg := newLogger(conn)
	defer lg.Sync()
	cli, err := dial(runCtx, conn, lg, conn.prefix)
	if err != nil {
		if sig := sup.stopping(); sig != 0 {
			return exitSignalled + int(sig)
		}
		return fail(std, "elect", err)
	}
	defer cli.Close()
	opts := []election.Option{election.WithPrefix(conn.prefix), election.WithTTL(*ttl), election.WithLogger(lg)}
	if *value != "" {
		opts = append(opts, election.WithValue(*value))
	}
	e, err := election.New(cli, name, opts...)
	if err != nil {
		return fail(std, "elect", usageError{err.Error()})
	}

	var last outcome
	noted := false
	err = e.Run(runCtx, election.Callbacks{OnStartedLeading: func(lctx context.Context) {
		if !noted {
			noteTTL(std, "elect", *ttl, e.TTL())
			noted = true
		}
		h := hold{what: "leadership", name: name, token: e.Rev(), key: e.EtcdKey(), lost: lctx.Done(), cause: e.Err}
		last = sup.run(h)
		// A command that cannot start would fail the same way next term.
		if *once || sup.stopping() != 0 || (!last.ran && !last.stopped) {
			stopRun()
			return
		}
		if last.lost {
			fmt.Fprintf(std.err, "leasekit elect: campaigning again\n")
		}
	}})
	switch sig, idle := sup.stopped(); {
	case err != nil:
		return fail(std, "elect", describe(err, conn, conn.prefix))
	case idle:
		return exitSignalled + int(sig)
	}
	// The last command's status, 70 after a loss, or why it could not
	// start.
	return last.status
}

func runLeader(ctx context.Context, std stdio, args []string) int {
	fs := newFlagSet("leader")
	var bad error
	conn := addConn(fs, election.DefaultPrefix, &bad)
	watch := fs.Bool("watch", false, "print every change")
	asJSON := fs.Bool("json", false, "print JSON")
	name, _, err := parseNamed(fs, args, false, bad)
	if errors.Is(err, errHelp) {
		return printHelp(std, "leader")
	}
	if err == nil {
		err = conn.check()
	}
	if err != nil {
		return fail(std, "leader", err)
	}
	lg := newLogger(conn)
	defer lg.Sync()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if *watch {
		stopSignals := forwardSignals(&supervisor{}, cancel)
		defer stopSignals()
	}
	cli, err := dial(ctx, conn, lg, conn.prefix)
	if err != nil {
		if ctx.Err() != nil {
			return exitOK
		}
		return fail(std, "leader", err)
	}
	defer cli.Close()
	e, err := election.New(cli, name, election.WithPrefix(conn.prefix), election.WithLogger(lg))
	if err != nil {
		return fail(std, "leader", usageError{err.Error()})
	}
	if !*watch {
		rctx, rcancel := context.WithTimeout(ctx, conn.commandTimeout)
		defer rcancel()
		l, err := e.Leader(rctx)
		if errors.Is(err, election.ErrNoLeader) {
			printLeader(std, election.Leader{}, *asJSON)
			return exitNone
		}
		if err != nil {
			return fail(std, "leader", describe(err, conn, conn.prefix))
		}
		printLeader(std, l, *asJSON)
		return exitOK
	}
	// Observe follows the election until a signal; it retries by itself
	// while etcd is unreachable.
	for l := range e.Observe(ctx) {
		printLeader(std, l, *asJSON)
	}
	return exitOK
}

// printLeader prints one line for l; the zero Leader is "no leader".
func printLeader(std stdio, l election.Leader, asJSON bool) {
	if asJSON {
		v := map[string]any{"leader": l.Rev != 0}
		if l.Rev != 0 {
			v["value"], v["term"] = l.Value, l.Rev
		}
		b, _ := json.Marshal(v)
		fmt.Fprintln(std.out, string(b))
		return
	}
	if l.Rev == 0 {
		fmt.Fprintln(std.out, "no leader")
		return
	}
	fmt.Fprintf(std.out, "%s (term %d)\n", l.Value, l.Rev)
}
