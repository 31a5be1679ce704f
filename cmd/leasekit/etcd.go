//go:build unix

package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/leasekit/leasekit/embedtest"
)

const etcdHelp = `Run a single-member etcd in the foreground, to try leasekit on a laptop
without installing etcd, until SIGINT or SIGTERM. It listens on 127.0.0.1
only unless --listen says otherwise, has no TLS and no auth, and uses
etcd's default timing (so the shortest TTL is 2s, as in production).
Its data lives in a new directory under --data-dir (default: the system's
temporary directory) and is removed on exit: it is not a server to keep.

Flags:
  --listen ADDR    host:port for clients (default 127.0.0.1:2379)
  --data-dir D     where the data directory goes
`

// etcdStartTimeout bounds how long etcd may take to start.
const etcdStartTimeout = 30 * time.Second

func runEtcd(ctx context.Context, std stdio, args []string) int {
	fs := newFlagSet("etcd")
	listen := fs.String("listen", "127.0.0.1:2379", "client address")
	dataDir := fs.String("data-dir", "", "where the data directory goes")
	pos, _, err := parse(fs, args, false)
	if errors.Is(err, errHelp) {
		return printHelp(std, "etcd")
	}
	if err == nil && len(pos) > 0 {
		err = usagef("unexpected argument %q", pos[0])
	}
	var host string
	if err == nil {
		if host, _, err = net.SplitHostPort(*listen); err != nil {
			err = usagef("--listen %q: %v", *listen, err)
		}
	}
	if err != nil {
		return fail(std, "etcd", err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		fmt.Fprintf(std.err, "leasekit etcd: warning: %s is not loopback: anyone who reaches it may use this etcd, without TLS or auth\n", *listen)
	}

	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	opts := []embedtest.Option{
		embedtest.WithClientAddr(*listen),
		// etcd's defaults: a 1s election timeout, so a 2s minimum TTL.
		embedtest.WithElection(100*time.Millisecond, time.Second),
	}
	if *dataDir != "" {
		if err := os.MkdirAll(*dataDir, 0o700); err != nil {
			return fail(std, "etcd", usagef("--data-dir: %v", err))
		}
		opts = append(opts, embedtest.WithDataDir(*dataDir))
	}
	sctx, cancel := context.WithTimeout(ctx, etcdStartTimeout)
	defer cancel()
	c, err := embedtest.Start(sctx, opts...)
	if err != nil {
		if ctx.Err() != nil {
			return exitOK
		}
		return fail(std, "etcd", fmt.Errorf("start: %w", err))
	}
	fmt.Fprintf(std.err, "leasekit etcd: serving %s; stop with Ctrl-C. Try:\n", c.Endpoints()[0])
	fmt.Fprintf(std.err, "  leasekit lock --endpoints %s demo -- sh -c 'echo token $LEASEKIT_TOKEN; sleep 5'\n", *listen)
	<-ctx.Done()
	if err := c.Close(); err != nil {
		fmt.Fprintf(std.err, "leasekit etcd: close: %s\n", oneLine(err.Error()))
		return exitStart
	}
	return exitOK
}
