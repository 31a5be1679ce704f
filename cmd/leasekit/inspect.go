//go:build unix

package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"maps"
	"slices"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/leasekit/leasekit/election"
	"github.com/leasekit/leasekit/etcdlock"
)

const inspectHelp = `Show who holds the lock NAME and who waits, in the order they will be
served, and who leads the election NAME and who campaigns; each with its
fencing token (or term), lease, TTL left, metadata and etcd key. Also
shown: the lock's etcd key prefix, on which etcd's concurrency.Mutex and
etcdctl lock exclude leasekit's holders and are excluded by them.

Flags:
  --json           print one JSON object (the fields are stable)
  --kind K         lock, sem, election or all (default all: the lock and
                   the election, and the semaphore if it exists)
  --prefix P       etcd key prefix of that kind; needs --kind
`

const unlockHelp = `Break the lock NAME for a holder that is dead or stuck: delete exactly
the holder's key, guarded by its create revision, so that a holder that
took the lock meanwhile is never touched. The holder's lease is left
alone, so its other locks stay held. The next waiter holds the lock at
once. A leasekit holder is told at once (its COMMAND gets SIGTERM and
leasekit lock exits 70); an etcdctl lock or concurrency.Mutex holder is
not told. Exits 1 if nobody holds the lock, or --token does not hold it.

Flags:
  --force          required: a live holder loses the lock mid-work
  --token T        break the hold only if its token is T (see inspect)
  --prefix P       etcd key prefix of the locks (default /leasekit/lock/)
`

// entryJSON is a holder or waiter of a lock or semaphore.
type entryJSON struct {
	Key      string            `json:"key"`
	Token    int64             `json:"token"`
	Lease    int64             `json:"lease"`
	LeaseHex string            `json:"lease_hex"`
	TTL      int64             `json:"ttl_seconds"` // left; -1 if the lease is gone
	Metadata map[string]string `json:"metadata"`
}

type lockJSON struct {
	Prefix string `json:"prefix"`
	// EtcdctlName is the name to give etcdctl lock (or
	// concurrency.NewMutex) for the same lock: Prefix without its '/'.
	EtcdctlName string      `json:"etcdctl_name"`
	Holder      *entryJSON  `json:"holder"`
	Waiters     []entryJSON `json:"waiters"`
}

type semJSON struct {
	Limit   int         `json:"limit"`
	Holders []entryJSON `json:"holders"`
	Waiters []entryJSON `json:"waiters"`
}

type candidateJSON struct {
	Key      string `json:"key"`
	Value    string `json:"value"`
	Term     int64  `json:"term"`
	Lease    int64  `json:"lease"`
	LeaseHex string `json:"lease_hex"`
	TTL      int64  `json:"ttl_seconds"`
}

type electionJSON struct {
	Prefix     string          `json:"prefix"`
	Leader     *candidateJSON  `json:"leader"`
	Candidates []candidateJSON `json:"candidates"`
}

type inspectJSON struct {
	Name      string        `json:"name"`
	Lock      *lockJSON     `json:"lock,omitempty"`
	Semaphore *semJSON      `json:"semaphore,omitempty"`
	Election  *electionJSON `json:"election,omitempty"`
}

func runInspect(ctx context.Context, std stdio, args []string) int {
	fs := newFlagSet("inspect")
	var bad error
	conn := addConn(fs, etcdlock.DefaultPrefix, &bad)
	asJSON := fs.Bool("json", false, "print JSON")
	kind := fs.String("kind", "all", "lock, sem, election or all")
	name, _, err := parseNamed(fs, args, false, bad)
	if errors.Is(err, errHelp) {
		return printHelp(std, "inspect")
	}
	prefixSet := false
	fs.Visit(func(f *flag.Flag) { prefixSet = prefixSet || f.Name == "prefix" })
	switch {
	case err != nil:
	case !slices.Contains([]string{"lock", "sem", "election", "all"}, *kind):
		err = usagef("--kind %q: want lock, sem, election or all", *kind)
	case prefixSet && *kind == "all":
		err = usagef("--prefix needs --kind lock, sem or election")
	default:
		err = conn.check()
	}
	if err != nil {
		return fail(std, "inspect", err)
	}
	lockPrefix, electionPrefix := etcdlock.DefaultPrefix, election.DefaultPrefix
	switch {
	case prefixSet && *kind == "election":
		electionPrefix = conn.prefix
	case prefixSet:
		lockPrefix = conn.prefix
	}

	lg := newLogger(conn)
	defer lg.Sync()
	probe := lockPrefix
	if *kind == "election" {
		probe = electionPrefix
	}
	cli, err := dial(ctx, conn, lg, probe)
	if err != nil {
		return fail(std, "inspect", err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(ctx, conn.commandTimeout)
	defer cancel()
	ttls := leaseTTLs{cli: cli, seen: map[int64]int64{}}
	out := inspectJSON{Name: name}

	if *kind != "election" {
		l, err := etcdlock.New(cli, etcdlock.WithPrefix(lockPrefix), etcdlock.WithLogger(lg))
		if err != nil {
			return fail(std, "inspect", usageError{err.Error()})
		}
		defer l.Close()
		if *kind != "sem" {
			if out.Lock, err = inspectLock(ctx, l, name, &ttls); err != nil {
				return fail(std, "inspect", inspectErr(err, conn, lockPrefix))
			}
		}
		if *kind != "lock" {
			info, err := l.InspectSemaphore(ctx, name)
			if err != nil {
				return fail(std, "inspect", inspectErr(err, conn, lockPrefix))
			}
			if info.Limit > 0 || *kind == "sem" {
				out.Semaphore = &semJSON{Limit: info.Limit, Holders: ttls.entries(ctx, info.Holders), Waiters: ttls.entries(ctx, info.Waiters)}
			}
		}
	}
	if *kind == "election" || *kind == "all" {
		e, err := election.New(cli, name, election.WithPrefix(electionPrefix), election.WithLogger(lg))
		if err != nil {
			return fail(std, "inspect", usageError{err.Error()})
		}
		line, err := e.Candidates(ctx)
		if err != nil {
			return fail(std, "inspect", inspectErr(err, conn, electionPrefix))
		}
		ej := &electionJSON{Prefix: e.KeyPrefix(), Candidates: []candidateJSON{}}
		for i, c := range line {
			cj := candidateJSON{Key: c.EtcdKey, Value: c.Value, Term: c.Rev, Lease: c.LeaseID,
				LeaseHex: fmt.Sprintf("%x", c.LeaseID), TTL: ttls.get(ctx, c.LeaseID)}
			if i == 0 {
				ej.Leader = &cj
				continue
			}
			ej.Candidates = append(ej.Candidates, cj)
		}
		out.Election = ej
	}

	if *asJSON {
		b, _ := json.MarshalIndent(out, "", "  ")
		fmt.Fprintln(std.out, string(b))
		return exitOK
	}
	printInspect(std, out)
	return exitOK
}

func inspectErr(err error, conn *connFlags, prefix string) error {
	if errors.Is(err, etcdlock.ErrInvalidKey) {
		return usageError{err.Error()}
	}
	return describe(err, conn, prefix)
}

func inspectLock(ctx context.Context, l *etcdlock.Locker, name string, ttls *leaseTTLs) (*lockJSON, error) {
	prefix, err := l.KeyPrefix(name)
	if err != nil {
		return nil, err
	}
	info, err := l.Inspect(ctx, name)
	if err != nil {
		return nil, err
	}
	lj := &lockJSON{Prefix: prefix, EtcdctlName: strings.TrimSuffix(prefix, "/"), Waiters: ttls.entries(ctx, info.Waiters)}
	if info.Holder != nil {
		lj.Holder = &ttls.entries(ctx, []etcdlock.Entry{*info.Holder})[0]
	}
	return lj, nil
}

// leaseTTLs asks etcd how long each lease has left, once per lease.
type leaseTTLs struct {
	cli  *clientv3.Client
	seen map[int64]int64
}

// get returns the seconds lease id has left: -1 if it is gone or
// unknown, 0 for a key on no lease.
func (t *leaseTTLs) get(ctx context.Context, id int64) int64 {
	if id == 0 {
		return 0
	}
	if ttl, ok := t.seen[id]; ok {
		return ttl
	}
	ttl := int64(-1)
	if resp, err := t.cli.TimeToLive(ctx, clientv3.LeaseID(id)); err == nil {
		ttl = resp.TTL
	}
	t.seen[id] = ttl
	return ttl
}

func (t *leaseTTLs) entries(ctx context.Context, es []etcdlock.Entry) []entryJSON {
	out := []entryJSON{}
	for _, e := range es {
		meta := e.Metadata
		if meta == nil {
			meta = map[string]string{}
		}
		out = append(out, entryJSON{Key: e.EtcdKey, Token: e.Token, Lease: e.LeaseID,
			LeaseHex: fmt.Sprintf("%x", e.LeaseID), TTL: t.get(ctx, e.LeaseID), Metadata: meta})
	}
	return out
}

func printInspect(std stdio, v inspectJSON) {
	w := std.out
	entry := func(label string, e entryJSON) {
		fmt.Fprintf(w, "  %-12s token %d  lease %s  ttl %s%s\n", label, e.Token, e.LeaseHex, ttlText(e.TTL), metaText(e.Metadata))
		fmt.Fprintf(w, "  %-12s key %s\n", "", e.Key)
	}
	if l := v.Lock; l != nil {
		fmt.Fprintf(w, "lock %q: prefix %s (etcdctl lock %s)\n", v.Name, l.Prefix, l.EtcdctlName)
		if l.Holder == nil {
			fmt.Fprintln(w, "  free")
		} else {
			entry("holder", *l.Holder)
		}
		for i, e := range l.Waiters {
			entry(fmt.Sprintf("waiter %d", i+1), e)
		}
	}
	if s := v.Semaphore; s != nil {
		fmt.Fprintf(w, "semaphore %q: limit %d, %d held, %d waiting\n", v.Name, s.Limit, len(s.Holders), len(s.Waiters))
		for i, e := range s.Holders {
			entry(fmt.Sprintf("holder %d", i+1), e)
		}
		for i, e := range s.Waiters {
			entry(fmt.Sprintf("waiter %d", i+1), e)
		}
	}
	if el := v.Election; el != nil {
		fmt.Fprintf(w, "election %q: prefix %s\n", v.Name, el.Prefix)
		cand := func(label string, c candidateJSON) {
			fmt.Fprintf(w, "  %-12s term %d  lease %s  ttl %s  value %q\n", label, c.Term, c.LeaseHex, ttlText(c.TTL), c.Value)
			fmt.Fprintf(w, "  %-12s key %s\n", "", c.Key)
		}
		if el.Leader == nil {
			fmt.Fprintln(w, "  no leader")
		} else {
			cand("leader", *el.Leader)
		}
		for i, c := range el.Candidates {
			cand(fmt.Sprintf("candidate %d", i+1), c)
		}
	}
}

func ttlText(s int64) string {
	switch {
	case s < 0:
		return "expired"
	case s == 0:
		return "none"
	}
	return fmt.Sprintf("%ds", s)
}

func metaText(m map[string]string) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(m)) {
		fmt.Fprintf(&b, "  %s=%s", k, m[k])
	}
	return b.String()
}

func runUnlock(ctx context.Context, std stdio, args []string) int {
	fs := newFlagSet("unlock")
	var bad error
	conn := addConn(fs, etcdlock.DefaultPrefix, &bad)
	force := fs.Bool("force", false, "break the lock")
	token := fs.Int64("token", 0, "only the hold with this token")
	name, _, err := parseNamed(fs, args, false, bad)
	if errors.Is(err, errHelp) {
		return printHelp(std, "unlock")
	}
	switch {
	case err != nil:
	case !*force:
		err = usagef("unlock needs --force: it takes the lock from whoever holds it, dead or alive")
	case *token < 0:
		err = usagef("--token %d is negative", *token)
	default:
		err = conn.check()
	}
	if err != nil {
		return fail(std, "unlock", err)
	}
	lg := newLogger(conn)
	defer lg.Sync()
	cli, err := dial(ctx, conn, lg, conn.prefix)
	if err != nil {
		return fail(std, "unlock", err)
	}
	defer cli.Close()
	l, err := etcdlock.New(cli, etcdlock.WithPrefix(conn.prefix), etcdlock.WithLogger(lg))
	if err != nil {
		return fail(std, "unlock", usageError{err.Error()})
	}
	defer l.Close()
	ctx, cancel := context.WithTimeout(ctx, conn.commandTimeout)
	defer cancel()
	e, err := l.ForceUnlock(ctx, name, *token)
	if errors.Is(err, etcdlock.ErrNotHeld) {
		switch {
		case e.Token == 0:
			fmt.Fprintf(std.err, "leasekit unlock: lock %q is free; nothing deleted\n", name)
		case *token != 0 && e.Token != *token:
			fmt.Fprintf(std.err, "leasekit unlock: lock %q is held by token %d, not %d; nothing deleted\n", name, e.Token, *token)
		default:
			fmt.Fprintf(std.err, "leasekit unlock: lock %q: token %d released it meanwhile; nothing deleted\n", name, e.Token)
		}
		return exitNone
	}
	if err != nil {
		return fail(std, "unlock", inspectErr(err, conn, conn.prefix))
	}
	fmt.Fprintf(std.out, "deleted %s (token %d, lease %x%s)\n", e.EtcdKey, e.Token, e.LeaseID, metaText(e.Metadata))
	fmt.Fprintln(std.out, "The holder's lease is untouched: its other locks stay held. The next waiter, if any, holds the lock now.")
	fmt.Fprintln(std.out, "A leasekit holder is told at once: `leasekit lock` sends SIGTERM to its command and exits 70; a program's Lock.Done closes and its guarded writes fail.")
	fmt.Fprintln(std.out, "An etcdctl lock or concurrency.Mutex holder is not told; only its writes guarded by its key fail.")
	return exitOK
}
