package queue

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/leasekit/leasekit/embedtest"
	"github.com/leasekit/leasekit/internal/etcderr"
	"github.com/leasekit/leasekit/internal/lease"
)

// TestStaleDeletesDoNotCount: a front watch that a member behind the
// entry's join serves starts below the join, so it reports deletes from
// before it, among them deletes of earlier keys with the names of the
// entry's own key and of the key ahead (etcdlock reuses its keys). Such a
// delete must neither end the wait nor admit it. With three members this
// ended semaphore waits with "queue key deleted while waiting"
// (TestSemaphoreNeverExceedsLimit), and could admit a waiter while the
// key ahead still held. Here the watch starts in the past on purpose, as
// the lagging member's would.
func TestStaleDeletesDoNotCount(t *testing.T) {
	c := embedtest.New(t)
	cli := c.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ls, err := lease.Grant(ctx, cli, 30*time.Second, false, zap.NewNop())
	require.NoError(t, err)
	defer ls.Close()
	const holderKey, waiterKey = "/q/h", "/q/w"
	// Earlier keys of both names, deleted before the entries join.
	var from int64
	for _, key := range []string{waiterKey, holderKey} {
		_, err := cli.Put(ctx, key, "")
		require.NoError(t, err)
		resp, err := cli.Delete(ctx, key)
		require.NoError(t, err)
		if from == 0 {
			from = resp.Header.Revision
		}
	}
	q := New(cli, "/q/", Rule{N: 1})
	holder, err := q.Join(ctx, holderKey, "", ls)
	require.NoError(t, err)
	defer holder.Close()
	e, err := q.Join(ctx, waiterKey, "", ls)
	require.NoError(t, err)
	defer e.Close()
	require.False(t, e.Admitted())

	// The front watch as a member behind the joins would serve it: from
	// before the earlier keys were deleted.
	w, stop := e.waiter(ctx)
	defer stop()
	ch := cli.Watch(w.wctx, "/q/", append(frontOpts, clientv3.WithRev(from))...)
	next := func() ([]deletion, int64) {
		t.Helper()
		select {
		case wr := <-ch:
			require.NoError(t, wr.Err())
			var dels []deletion
			for _, ev := range wr.Events {
				dels = append(dels, deletion{key: string(ev.Kv.Key), rev: ev.Kv.ModRevision})
			}
			return dels, wr.Header.Revision
		case <-ctx.Done():
			t.Fatal("no watch event")
			return nil, 0
		}
	}
	for seen := 0; seen < 2; { // the two earlier deletes
		dels, rev := next()
		seen += len(dels)
		require.NoError(t, w.deleted(dels, rev))
		require.NoError(t, e.Err(), "an earlier key's delete ended the entry")
		require.False(t, e.Admitted(), "an earlier key's delete admitted the entry")
	}
	// The holder's own delete admits it, with no read.
	require.NoError(t, holder.Leave(ctx))
	dels, rev := next()
	require.NoError(t, w.deleted(dels, rev))
	require.True(t, e.Admitted())
}

// TestWaitEndsWithTheEntrysEnd: the entry's end cancels the wait's
// watches, so a watch can fail ("closed") in the very step in which the
// entry ends, when its key is deleted. The wait must then report the end
// (ErrGone, which etcdlock turns into ErrLockLost), not the watch's
// failure: TestScopedRule saw "etcd watch failed: closed" now and then.
func TestWaitEndsWithTheEntrysEnd(t *testing.T) {
	e := New(nil, "/q/", Rule{N: 1}).newEntry("/q/k", context.Background())
	e.end(ErrGone)
	b := etcderr.Backoff{Min: time.Hour, Max: time.Hour}
	err := e.pause(context.Background(), fmt.Errorf("%w: closed", etcderr.ErrWatch), &b)
	require.ErrorIs(t, err, ErrGone)
}
