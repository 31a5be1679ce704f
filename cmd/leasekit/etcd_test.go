//go:build unix

package main

import (
	"net"
	"os/exec"
	"strings"
	"syscall"
	"testing"
)

// TestEtcdCommand starts `leasekit etcd` on a free port and runs `leasekit
// lock` against it.
func TestEtcdCommand(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	etcd, lines := leasekitLines(t, (*exec.Cmd).StderrPipe, "etcd", "--listen="+addr, "--data-dir="+t.TempDir())
	if !lines.Scan() || !strings.Contains(lines.Text(), "serving http://"+addr) {
		t.Fatalf("leasekit etcd printed %q (%v)", lines.Text(), lines.Err())
	}
	kids := newChildren(t)
	code, _, errs := runLeasekit(t, kids, cmdline([]string{"lock", "--endpoints=" + addr, "trial"}, childArgs("trial", "exit", "0"))...)
	if code != 0 {
		t.Fatalf("lock against leasekit etcd: status %d, stderr %q", code, errs)
	}
	if err := etcd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for lines.Scan() {
	}
	if err := etcd.Wait(); err != nil {
		t.Fatalf("leasekit etcd after SIGTERM: %v", err)
	}
}
