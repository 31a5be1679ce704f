package queue_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"
	"go.uber.org/zap"

	"github.com/leasekit/leasekit/embedtest"
	"github.com/leasekit/leasekit/internal/lease"
	"github.com/leasekit/leasekit/internal/queue"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, embedtest.LeakOptions()...) }

const prefix = "/q/"

// join adds key i to the queue on lease ls, for n holders at once.
func join(t *testing.T, cli *clientv3.Client, ls *lease.Lease, i, n int) *queue.Entry {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	e, err := queue.New(cli, prefix, queue.Rule{N: n}).Join(ctx, fmt.Sprint(prefix, i), "", ls)
	require.NoError(t, err)
	t.Cleanup(e.Close)
	return e
}

// grant grants a lease that outlasts the test, without keepalive.
func grant(t *testing.T, cli *clientv3.Client) *lease.Lease {
	t.Helper()
	ls, err := lease.Grant(context.Background(), cli, 30*time.Second, false, zap.NewNop())
	require.NoError(t, err)
	t.Cleanup(ls.Close)
	return ls
}

// admitted waits, with a deadline, for e to be admitted.
func admitted(t *testing.T, e *queue.Entry) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, e.Wait(ctx))
}

// notAdmitted checks that e is not admitted within a short wait.
func notAdmitted(t *testing.T, e *queue.Entry) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, e.Wait(ctx), context.DeadlineExceeded)
}

func TestOrderAndAdmission(t *testing.T) {
	for _, n := range []int{1, 2} {
		t.Run(fmt.Sprintf("n=%d", n), func(t *testing.T) {
			c := embedtest.New(t)
			cli := c.Client()
			ls := grant(t, cli)
			es := make([]*queue.Entry, 4)
			for i := range es {
				es[i] = join(t, cli, ls, i, n)
				if i > 0 {
					require.Greater(t, es[i].Rev(), es[i-1].Rev(), "create revisions order the queue")
				}
			}
			for i, e := range es {
				require.Equal(t, i < n, e.Admitted(), "entry %d", i)
			}
			notAdmitted(t, es[n])
			require.NoError(t, es[0].Leave(context.Background()))
			admitted(t, es[n])
			require.ErrorIs(t, es[0].Leave(context.Background()), queue.ErrGone)
		})
	}
}

func TestAbandonedWaiterAhead(t *testing.T) {
	c := embedtest.New(t)
	cli := c.Client()
	ls := grant(t, cli)
	holder := join(t, cli, ls, 0, 1)
	middle := join(t, cli, ls, 1, 1)
	last := join(t, cli, ls, 2, 1)
	// A waiter ahead that leaves does not admit the one behind it while
	// the holder still holds.
	require.NoError(t, middle.Leave(context.Background()))
	notAdmitted(t, last)
	require.NoError(t, holder.Leave(context.Background()))
	admitted(t, last)
}

func TestEntryEnds(t *testing.T) {
	c := embedtest.New(t)
	cli := c.Client()
	ls := grant(t, cli)
	t.Run("the lease's end ends it at once", func(t *testing.T) {
		lost := grant(t, cli)
		e := join(t, cli, lost, 10, 1)
		lost.Close()
		<-e.Done()
		require.ErrorIs(t, e.Err(), queue.ErrGone)
	})
	t.Run("rebind moves what ends it", func(t *testing.T) {
		old := grant(t, cli)
		e := join(t, cli, old, 11, 1)
		next, loseNext := context.WithCancel(context.Background())
		e.Rebind(next)
		old.Close()
		select {
		case <-e.Done():
			t.Fatal("the old lease ended a rebound entry")
		default:
		}
		loseNext()
		<-e.Done()
	})
	t.Run("a delete by someone else ends it", func(t *testing.T) {
		e := join(t, cli, ls, 12, 1)
		_, err := cli.Delete(context.Background(), e.Key())
		require.NoError(t, err)
		<-e.Done()
		require.ErrorIs(t, e.Err(), queue.ErrGone)
	})
	t.Run("a waiter whose key goes stops waiting", func(t *testing.T) {
		first := join(t, cli, ls, 13, 1)
		waiter := join(t, cli, ls, 14, 1)
		errc := make(chan error, 1)
		go func() { errc <- waiter.Wait(context.Background()) }()
		_, err := cli.Delete(context.Background(), waiter.Key())
		require.NoError(t, err)
		require.True(t, errors.Is(<-errc, queue.ErrGone))
		require.NoError(t, first.Leave(context.Background()))
	})
}

// createdWatcher signals each watch of key that etcd confirmed.
type createdWatcher struct {
	clientv3.Watcher
	key     string
	created chan struct{}
}

func (w *createdWatcher) Watch(ctx context.Context, key string, opts ...clientv3.OpOption) clientv3.WatchChan {
	ch := w.Watcher.Watch(ctx, key, opts...)
	if key != w.key {
		return ch
	}
	out := make(chan clientv3.WatchResponse)
	go func() {
		defer close(out)
		for wr := range ch {
			if wr.Created {
				select {
				case w.created <- struct{}{}:
				default:
				}
			}
			select {
			case out <- wr:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}

// A waiter that comes to the front of a long queue watches the queue's
// deletes; a transaction that then deletes its key with the one ahead of
// it (etcdctl del --prefix) must end its wait with ErrGone, never admit it.
func TestNotAdmittedWithOwnKeyGone(t *testing.T) {
	c := embedtest.New(t)
	cli, err := c.NewClient()
	require.NoError(t, err)
	cw := &createdWatcher{Watcher: cli.Watcher, key: prefix, created: make(chan struct{}, 1)}
	cli.Watcher = cw
	ls := grant(t, cli)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for round := range 5 {
		select {
		case <-cw.created:
		default:
		}
		es := make([]*queue.Entry, 4)
		for i := range es {
			es[i] = join(t, cli, ls, 10*round+i, 1)
		}
		// The last starts out with more keys ahead than it watches.
		require.False(t, es[3].Admitted())
		errc := make(chan error, 1)
		go func() { errc <- es[3].Wait(ctx) }()
		require.NoError(t, es[0].Leave(ctx))
		require.NoError(t, es[1].Leave(ctx))
		select {
		case <-cw.created:
		case <-ctx.Done():
			t.Fatal("the waiter never watched the queue")
		}
		_, err := cli.Txn(ctx).Then(clientv3.OpDelete(es[2].Key()), clientv3.OpDelete(es[3].Key())).Commit()
		require.NoError(t, err)
		require.ErrorIs(t, <-errc, queue.ErrGone, "round %d", round)
	}
}

// A rule with a scope counts only the keys under it: RWMutex readers wait
// for the writers ahead (scope: the writers' prefix), writers for
// everyone. A reader's key is outside the scope its front watch sees, so
// an event that would admit it is checked with a read of its own key: a
// transaction that deletes the writer ahead and the reader together ends
// the reader's wait with ErrGone.
func TestScopedRule(t *testing.T) {
	c := embedtest.New(t)
	cli := c.Client()
	ls := grant(t, cli)
	writers := prefix + "w/"
	writer := queue.New(cli, prefix, queue.Rule{N: 1})
	reader := queue.New(cli, prefix, queue.Rule{N: 1, Scope: writers})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	joinAs := func(q *queue.Queue, key string) *queue.Entry {
		t.Helper()
		e, err := q.Join(ctx, key, "", ls)
		require.NoError(t, err)
		t.Cleanup(e.Close)
		return e
	}

	w0 := joinAs(writer, writers+"0")
	require.True(t, w0.Admitted())
	r1, r2 := joinAs(reader, prefix+"r/1"), joinAs(reader, prefix+"r/2")
	require.False(t, r1.Admitted())
	busy, err := reader.Busy(ctx)
	require.NoError(t, err)
	require.True(t, busy, "a writer holds")
	notAdmitted(t, r2)
	require.NoError(t, w0.Leave(ctx))
	admitted(t, r1)
	admitted(t, r2)

	w3 := joinAs(writer, writers+"3")
	require.False(t, w3.Admitted(), "readers hold")
	r4 := joinAs(reader, prefix+"r/4")
	require.False(t, r4.Admitted(), "a writer waits ahead")
	require.NoError(t, r1.Leave(ctx))
	notAdmitted(t, w3)
	require.NoError(t, r2.Leave(ctx))
	admitted(t, w3)
	notAdmitted(t, r4)

	errc := make(chan error, 1)
	go func() { errc <- r4.Wait(ctx) }()
	_, err = cli.Txn(ctx).Then(clientv3.OpDelete(w3.Key()), clientv3.OpDelete(r4.Key())).Commit()
	require.NoError(t, err)
	require.ErrorIs(t, <-errc, queue.ErrGone)
}
