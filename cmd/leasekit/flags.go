//go:build unix

package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
)

// connFlags are the flags every command that talks to etcd takes, named
// as etcdctl names them, with etcdctl's environment variables as
// defaults.
type connFlags struct {
	endpoints      string
	cacert         string
	cert           string
	key            string
	user           string
	password       string
	dialTimeout    time.Duration
	commandTimeout time.Duration
	prefix         string
	logLevel       string
}

// Defaults of the flags.
const (
	defaultEndpoint       = "127.0.0.1:2379"
	defaultDialTimeout    = 2 * time.Second // etcdctl's
	defaultCommandTimeout = 5 * time.Second // etcdctl's
	defaultTTL            = 10 * time.Second
	defaultKillAfter      = 10 * time.Second
	minTTL                = time.Second
)

// env returns the ETCDCTL_ variable name or def.
func env(name, def string) string {
	if v, ok := os.LookupEnv("ETCDCTL_" + name); ok && v != "" {
		return v
	}
	return def
}

// envDuration is env for durations; a bad value is a usage error, found
// when the flags are checked.
func envDuration(name string, def time.Duration, bad *error) time.Duration {
	v := env(name, "")
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		*bad = usagef("ETCDCTL_%s=%q: %v", name, v, err)
		return def
	}
	return d
}

// addConn registers the connection flags on fs. prefixDefault is the
// default key prefix of the command ("" for commands that have none).
func addConn(fs *flag.FlagSet, prefixDefault string, bad *error) *connFlags {
	c := &connFlags{}
	fs.StringVar(&c.endpoints, "endpoints", env("ENDPOINTS", defaultEndpoint), "comma-separated etcd `endpoints` (env ETCDCTL_ENDPOINTS)")
	fs.StringVar(&c.cacert, "cacert", env("CACERT", ""), "verify etcd's certificate with this CA `file` (env ETCDCTL_CACERT)")
	fs.StringVar(&c.cert, "cert", env("CERT", ""), "client certificate `file` for TLS (env ETCDCTL_CERT)")
	fs.StringVar(&c.key, "key", env("KEY", ""), "client key `file` for TLS (env ETCDCTL_KEY)")
	fs.StringVar(&c.user, "user", env("USER", ""), "etcd `user`, or user:password (env ETCDCTL_USER)")
	fs.StringVar(&c.password, "password", env("PASSWORD", ""), "etcd `password` (env ETCDCTL_PASSWORD)")
	fs.DurationVar(&c.dialTimeout, "dial-timeout", envDuration("DIAL_TIMEOUT", defaultDialTimeout, bad), "give up reaching etcd after this `duration` (env ETCDCTL_DIAL_TIMEOUT)")
	fs.DurationVar(&c.commandTimeout, "command-timeout", envDuration("COMMAND_TIMEOUT", defaultCommandTimeout, bad), "bound on each single request to etcd (env ETCDCTL_COMMAND_TIMEOUT)")
	if prefixDefault != "" {
		fs.StringVar(&c.prefix, "prefix", prefixDefault, "etcd key `prefix` of the locks or elections")
	}
	fs.StringVar(&c.logLevel, "log-level", logOff, "library and etcd client logs on stderr: debug, info, warn, error or off")
	return c
}

// check validates the connection flags.
func (c *connFlags) check() error {
	if c.endpoints == "" {
		return usagef("--endpoints is empty")
	}
	for _, ep := range c.endpointList() {
		if ep == "" {
			return usagef("--endpoints %q has an empty entry", c.endpoints)
		}
	}
	if (c.cert == "") != (c.key == "") {
		return usagef("--cert and --key go together")
	}
	if c.user == "" && c.password != "" {
		return usagef("--password needs --user")
	}
	if c.user != "" && !strings.Contains(c.user, ":") && c.password == "" {
		return usagef("--user %s needs --password, ETCDCTL_PASSWORD or --user %s:PASSWORD", c.user, c.user)
	}
	if c.dialTimeout <= 0 || c.commandTimeout <= 0 {
		return usagef("--dial-timeout and --command-timeout must be positive")
	}
	if _, err := logLevel(c.logLevel); err != nil {
		return err
	}
	return nil
}

func (c *connFlags) endpointList() []string {
	var eps []string
	for _, ep := range strings.Split(c.endpoints, ",") {
		eps = append(eps, strings.TrimSpace(ep))
	}
	return eps
}

// credentials returns the user and password, split from --user
// user:password as etcdctl does.
func (c *connFlags) credentials() (user, password string) {
	if c.password == "" {
		if u, p, ok := strings.Cut(c.user, ":"); ok {
			return u, p
		}
	}
	return c.user, c.password
}

// newFlagSet returns a flag set that reports errors to nobody: the
// caller turns them into one line and status 64.
func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet("leasekit "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// errHelp asks for the command's help: status 0.
var errHelp = errors.New("help requested")

// parse parses args, flags anywhere before "--", and returns the
// positional arguments and, if withCommand, the command after "--".
func parse(fs *flag.FlagSet, args []string, withCommand bool) (pos, command []string, err error) {
	before := args
	if i := indexOf(args, "--"); i >= 0 {
		before, command = args[:i], args[i+1:]
		if !withCommand {
			return nil, nil, usagef("unexpected -- %s", strings.Join(command, " "))
		}
	} else if withCommand {
		defer func() {
			if err == nil {
				err = usagef("missing -- before the command (leasekit %s NAME -- COMMAND [ARG...])", strings.TrimPrefix(fs.Name(), "leasekit "))
			}
		}()
	}
	for {
		if err := fs.Parse(before); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, nil, errHelp
			}
			return nil, nil, usageError{err.Error()}
		}
		rest := fs.Args()
		if len(rest) == 0 {
			break
		}
		pos = append(pos, rest[0])
		before = rest[1:]
	}
	if withCommand && command != nil && len(command) == 0 {
		return nil, nil, usagef("no command after --")
	}
	return pos, command, nil
}

func indexOf(args []string, s string) int {
	for i, a := range args {
		if a == s {
			return i
		}
	}
	return -1
}

// parseNamed is parse for the commands of one NAME: it also returns bad,
// an error found in the environment while the flags were registered, and
// checks NAME.
func parseNamed(fs *flag.FlagSet, args []string, withCommand bool, bad error) (string, []string, error) {
	pos, argv, err := parse(fs, args, withCommand)
	if err != nil {
		return "", nil, err
	}
	if bad != nil {
		return "", nil, bad
	}
	name, err := oneName(pos)
	return name, argv, err
}

// oneName checks that pos is exactly one non-empty NAME.
func oneName(pos []string) (string, error) {
	switch {
	case len(pos) == 0:
		return "", usagef("missing NAME")
	case len(pos) > 1:
		return "", usagef("one NAME expected, got %q", pos)
	case pos[0] == "":
		return "", usagef("NAME is empty")
	}
	return pos[0], nil
}

// checkTTL refuses TTLs etcd cannot grant as asked.
func checkTTL(ttl time.Duration) error {
	if ttl < minTTL {
		return usagef("--ttl %v is below 1s: etcd counts whole seconds", ttl)
	}
	return nil
}

// positiveInt is a flag.Value for a count that must be at least 1.
type positiveInt struct {
	n   int
	set bool
}

func (p *positiveInt) String() string { return strconv.Itoa(p.n) }

func (p *positiveInt) Set(s string) error {
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		return fmt.Errorf("%q is not a whole number of at least 1", s)
	}
	p.n, p.set = n, true
	return nil
}
