//go:build unix

package main

import (
	"context"
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
)

const overview = `leasekit runs a command under an etcd lock, as the leader of an election
or under a semaphore, and inspects or breaks locks.

Usage:
`

const commonHelp = `
Flags of every command that talks to etcd (etcdctl's names, and its
ETCDCTL_* environment variables as defaults):
  --endpoints E       comma-separated endpoints (default $ETCDCTL_ENDPOINTS,
                      else 127.0.0.1:2379); https:// or --cacert for TLS
  --cacert F          CA certificate to verify etcd with
  --cert F, --key F   client certificate and key
  --user U[:P]        etcd user (and password)
  --password P        etcd password
  --dial-timeout D    give up reaching etcd after D (default 2s)
  --command-timeout D bound on a single request (default 5s)
  --prefix P          etcd key prefix of the locks or elections
  --log-level L       library and etcd client logs on stderr: debug, info,
                      warn, error or off (default off: leasekit says what
                      matters itself)

Exit statuses:
  0..255   the command's own status, passed through (lock, elect, sem)
  128+n    the command was killed by signal n; or leasekit got signal n
           before the command started (nothing ran)
  1        leader: no leader; unlock: nobody holds the lock (or --token)
  64       usage error (bad flag, no --, empty NAME, --ttl below 1s)
  69       etcd unreachable, or it refused (TLS, login, permission)
  70       the lock, permit or leadership was lost while the command ran;
           it got SIGTERM (and SIGKILL after --kill-after)
  71       the command could not be started (other than 126, 127)
  75       --try or --timeout: the lock was not acquired; nothing ran
  126      the command is not executable
  127      the command was not found

The margin: a holder cut off from etcd counts its lease as lost at the
send time of its last successful keepalive + TTL - margin (TTL/10, at
least 50ms, at most 1s), and etcd expires it no earlier than that
keepalive's arrival + TTL. So the command gets SIGTERM at least the margin
(1s with the default --ttl 10s) before anyone else can acquire the lock.
A command that may not stop within the margin must fence what it writes
with $LEASEKIT_TOKEN (reject writes with a token lower than one seen), or
use a --kill-after below the margin. If leasekit itself is killed, Linux
kills the command with it (parent-death signal); elsewhere the command
runs on, and the next holder starts when the lease expires. A paused
leasekit (SIGSTOP, a frozen VM) warns nobody: fence.
`

func runHelp(_ context.Context, std stdio, args []string) int {
	if len(args) == 0 {
		fmt.Fprint(std.out, overview)
		for _, c := range commands {
			fmt.Fprintf(std.out, "  leasekit %-48s %s\n", c.usage, c.summary)
		}
		fmt.Fprint(std.out, commonHelp)
		fmt.Fprintln(std.out, "\nleasekit help COMMAND says more about one.")
		return exitOK
	}
	if len(args) > 1 {
		fmt.Fprintln(std.err, "leasekit help: one COMMAND at most")
		return exitUsage
	}
	if _, ok := lookup(args[0]); !ok {
		fmt.Fprintf(std.err, "leasekit help: unknown command %q\n", args[0])
		return exitUsage
	}
	return printHelp(std, args[0])
}

// printHelp prints the help of the command name on stdout.
func printHelp(std stdio, name string) int {
	c, _ := lookup(name)
	fmt.Fprintf(std.out, "Usage: leasekit %s\n\n%s", c.usage, c.help)
	switch name {
	case "lock", "elect", "sem", "inspect", "leader", "unlock":
		fmt.Fprint(std.out, commonHelp)
	}
	return exitOK
}

func runVersion(_ context.Context, std stdio, _ []string) int {
	version, rev, etcd := "(devel)", "", "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" {
			version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				rev = " " + s.Value[:12]
			}
		}
		for _, d := range bi.Deps {
			if d.Path == "go.etcd.io/etcd/client/v3" {
				etcd = d.Version
			}
		}
	}
	fmt.Fprintf(std.out, "leasekit %s%s %s etcd-client %s\n", version, rev, runtime.Version(), etcd)
	return exitOK
}

// oneLine keeps a message on one line, for line-based logs.
func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", "; ")), " ")
}
