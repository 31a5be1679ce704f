//go:build unix

package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/leasekit/leasekit/embedtest"
)

// leasekitBin is the leasekit binary the tests run, built once by
// TestMain.
var leasekitBin string

// Environment of the child mode: the test binary is also the command the
// tests run under leasekit.
const (
	childEnv = "LEASEKIT_TEST_CHILD"
	sockEnv  = "LEASEKIT_TEST_SOCK"
	// exclEnv names a file a child creates exclusively while it runs,
	// and removes before it exits: children that overlap find it there.
	exclEnv = "LEASEKIT_TEST_EXCL"
)

// The tests that run leasekit against a cluster of their own run in
// parallel: most of their time is spent waiting for processes and TTLs.
// TestEtcdCommand, which needs a port nobody takes meanwhile, does not.
func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(childMain(os.Args[1:]))
	}
	dir, err := os.MkdirTemp("", "leasekit-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	leasekitBin = filepath.Join(dir, "leasekit")
	args := []string{"build", "-o", leasekitBin}
	if raceEnabled {
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, ".")...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build leasekit:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(embedtest.LeakOptions()...); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

// childMain is the command the tests run under leasekit. Its arguments
// are TAG and an action:
//
//	hold     run until told "exit N", or until SIGINT, SIGTERM or SIGHUP,
//	         which it reports and then dies of;
//	ignore   as hold, but SIGTERM is only reported: it takes SIGKILL;
//	read     read a line from stdin, report it ("read TAG LINE"), exit 0;
//	exit N   exit with status N at once;
//	raise S  die of signal number S (one whose default action Go keeps:
//	         SIGKILL, SIGINT, SIGTERM, SIGHUP).
//
// It reports to the test over the Unix socket $LEASEKIT_TEST_SOCK: first
// "start TAG PID TOKEN KEY NANOS NAME", then "signal TAG SIGNUM NANOS".
// With $LEASEKIT_TEST_EXCL set, it first reports "overlap TAG" if
// another child holds that file.
// The test sees its death as the end of the connection, which the
// kernel closes however the process ends.
func childMain(args []string) int {
	if len(args) < 2 {
		fmt.Fprintln(os.Stderr, "child: TAG ACTION [ARG]")
		return 2
	}
	tag, action := args[0], args[1]
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	conn, err := net.Dial("unix", os.Getenv(sockEnv))
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 2
	}
	release := func() {}
	if excl := os.Getenv(exclEnv); excl != "" {
		f, err := os.OpenFile(excl, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err != nil {
			fmt.Fprintf(conn, "overlap %s\n", tag)
		} else {
			f.Close()
			release = func() { os.Remove(excl) }
		}
	}
	fmt.Fprintf(conn, "start %s %d %s %s %d %s\n", tag, os.Getpid(), os.Getenv("LEASEKIT_TOKEN"),
		os.Getenv("LEASEKIT_KEY"), time.Now().UnixNano(), os.Getenv("LEASEKIT_NAME"))
	switch action {
	case "read":
		line, _ := bufio.NewReader(os.Stdin).ReadString('\n')
		fmt.Fprintf(conn, "read %s %s\n", tag, strings.TrimSpace(line))
		release()
		return 0
	case "exit":
		n, _ := strconv.Atoi(args[2])
		return n
	case "raise":
		n, _ := strconv.Atoi(args[2])
		die(syscall.Signal(n))
	}
	told := make(chan int, 1)
	go func() {
		sc := bufio.NewScanner(conn)
		for sc.Scan() {
			if n, ok := strings.CutPrefix(sc.Text(), "exit "); ok {
				code, _ := strconv.Atoi(n)
				told <- code
				return
			}
		}
		told <- 3 // the test went away
	}()
	for {
		select {
		case code := <-told:
			release()
			return code
		case s := <-sigs:
			sig := s.(syscall.Signal)
			fmt.Fprintf(conn, "signal %s %d %d\n", tag, int(sig), time.Now().UnixNano())
			if action == "ignore" && sig == syscall.SIGTERM {
				continue
			}
			release()
			die(sig)
		}
	}
}

// die ends the process with sig, as its default action does.
func die(sig syscall.Signal) {
	signal.Reset(sig)
	syscall.Kill(os.Getpid(), sig)
	select {}
}
