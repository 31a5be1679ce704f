package testkit

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/leasekit/leasekit/internal/etcderr"
)

// WaitKeys waits until ok accepts the keys under prefix and returns them,
// oldest (by create revision) first. It watches the prefix from the
// current revision, then reads it, and applies every event the read did
// not see, asking ok after the read and after each watch response. It
// never starts a watch in the past, which would wait for etcd's 100 ms
// catch-up loop, and never polls. The watch needs an etcd leader; when it
// breaks (a member lost its leader or went away), WaitKeys starts over.
// Any goroutine may call it; it returns ctx's error, with the keys it saw
// last, if ok never accepts.
func WaitKeys(ctx context.Context, cli *clientv3.Client, prefix string, ok func(keys []string) bool) ([]string, error) {
	b := etcderr.Backoff{Min: 10 * time.Millisecond, Max: 100 * time.Millisecond}
	for {
		keys, err := waitKeys(ctx, cli, prefix, ok)
		if err == nil || ctx.Err() != nil || b.Wait(ctx) != nil {
			return keys, err
		}
	}
}

// waitKeys is one attempt of WaitKeys: it fails when the watch breaks.
func waitKeys(ctx context.Context, cli *clientv3.Client, prefix string, ok func(keys []string) bool) ([]string, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wch := cli.Watch(clientv3.WithRequireLeader(ctx), prefix, clientv3.WithPrefix(), clientv3.WithCreatedNotify())
	if wr := <-wch; !wr.Created {
		return nil, fmt.Errorf("testkit: watch %q: %w", prefix, watchErr(ctx, wr))
	}
	resp, err := cli.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithKeysOnly(),
		clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortAscend))
	if err != nil {
		return nil, fmt.Errorf("testkit: read %q: %w", prefix, err)
	}
	var keys []string
	for _, kv := range resp.Kvs {
		keys = append(keys, string(kv.Key))
	}
	for !ok(keys) {
		wr, open := <-wch
		if !open || wr.Err() != nil {
			return keys, fmt.Errorf("testkit: keys under %q are %q: %w", prefix, keys, watchErr(ctx, wr))
		}
		for _, ev := range wr.Events {
			if ev.Kv.ModRevision <= resp.Header.Revision {
				continue // the read saw it
			}
			k := string(ev.Kv.Key)
			i := slices.Index(keys, k)
			switch {
			case ev.Type == clientv3.EventTypeDelete && i >= 0:
				keys = slices.Delete(keys, i, i+1)
			case ev.Type == clientv3.EventTypePut && i < 0:
				keys = append(keys, k)
			}
		}
	}
	return keys, nil
}

// watchErr says why a watch ended: its context, or its own error.
func watchErr(ctx context.Context, wr clientv3.WatchResponse) error {
	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case wr.Err() != nil:
		return wr.Err()
	default:
		return errors.New("watch closed")
	}
}

// AwaitKeys waits until exactly n keys exist under prefix and returns
// them, oldest first. It fails tb if that does not happen within Timeout.
func AwaitKeys(tb testing.TB, cli *clientv3.Client, prefix string, n int) []string {
	tb.Helper()
	return AwaitKeysFunc(tb, cli, prefix, func(keys []string) bool { return len(keys) == n })
}

// AwaitKeysAtLeast waits until at least n keys exist under prefix and
// returns them, oldest first. It fails tb if that does not happen within
// Timeout.
func AwaitKeysAtLeast(tb testing.TB, cli *clientv3.Client, prefix string, n int) []string {
	tb.Helper()
	return AwaitKeysFunc(tb, cli, prefix, func(keys []string) bool { return len(keys) >= n })
}

// AwaitKeysFunc waits until ok accepts the keys under prefix (see
// WaitKeys) and returns them. It fails tb if that does not happen within
// Timeout.
func AwaitKeysFunc(tb testing.TB, cli *clientv3.Client, prefix string, ok func(keys []string) bool) []string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	keys, err := WaitKeys(ctx, cli, prefix, ok)
	if err != nil {
		tb.Fatal(err)
	}
	return keys
}

// CountKeys returns how many keys exist under prefix now: one read, no
// wait.
func CountKeys(tb testing.TB, cli *clientv3.Client, prefix string) int {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	resp, err := cli.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		tb.Fatal(err)
	}
	return int(resp.Count)
}
