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

	"github.com/leasekit/leasekit/embedtest"
	"github.com/leasekit/leasekit/internal/queue"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, embedtest.LeakOptions()...) }

const prefix = "/q/"

// join adds key i to the queue on lease ls, for n holders at once.
func join(t *testing.T, cli *clientv3.Client, ls clientv3.LeaseID, i, n int, lost context.Context) *queue.Entry {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	e, err := queue.Join(ctx, context.Background(), cli, prefix, fmt.Sprint(prefix, i), "", ls, n, lost)
	require.NoError(t, err)
	t.Cleanup(e.Close)
	return e
}

func grant(t *testing.T, cli *clientv3.Client) clientv3.LeaseID {
	t.Helper()
	resp, err := cli.Grant(context.Background(), 30)
	require.NoError(t, err)
	return resp.ID
}

// admitted waits, with a deadline, for e to be admitted among n.
func admitted(t *testing.T, e *queue.Entry, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, e.Wait(ctx, context.Background(), n))
}

// notAdmitted checks that e is not admitted within a short wait.
func notAdmitted(t *testing.T, e *queue.Entry, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, e.Wait(ctx, context.Background(), n), context.DeadlineExceeded)
}

func TestOrderAndAdmission(t *testing.T) {
	for _, n := range []int{1, 2} {
		t.Run(fmt.Sprintf("n=%d", n), func(t *testing.T) {
			c := embedtest.New(t)
			cli := c.Client()
			ls := grant(t, cli)
			es := make([]*queue.Entry, 4)
			for i := range es {
				es[i] = join(t, cli, ls, i, n, context.Background())
				if i > 0 {
					require.Greater(t, es[i].Rev(), es[i-1].Rev(), "create revisions order the queue")
				}
			}
			for i, e := range es {
				require.Equal(t, i < n, e.Admitted(n), "entry %d", i)
			}
			notAdmitted(t, es[n], n)
			require.NoError(t, es[0].Leave(context.Background()))
			admitted(t, es[n], n)
			require.ErrorIs(t, es[0].Leave(context.Background()), queue.ErrGone)
		})
	}
}

func TestAbandonedWaiterAhead(t *testing.T) {
	c := embedtest.New(t)
	cli := c.Client()
	ls := grant(t, cli)
	holder := join(t, cli, ls, 0, 1, context.Background())
	middle := join(t, cli, ls, 1, 1, context.Background())
	last := join(t, cli, ls, 2, 1, context.Background())
	// A waiter ahead that leaves does not admit the one behind it while
	// the holder still holds.
	require.NoError(t, middle.Leave(context.Background()))
	notAdmitted(t, last, 1)
	require.NoError(t, holder.Leave(context.Background()))
	admitted(t, last, 1)
}

func TestEntryEnds(t *testing.T) {
	c := embedtest.New(t)
	cli := c.Client()
	ls := grant(t, cli)
	t.Run("lost ends it at once", func(t *testing.T) {
		lost, loseIt := context.WithCancel(context.Background())
		e := join(t, cli, ls, 10, 1, lost)
		loseIt()
		<-e.Done()
		require.ErrorIs(t, e.Err(), queue.ErrGone)
	})
	t.Run("rebind moves what ends it", func(t *testing.T) {
		old, loseOld := context.WithCancel(context.Background())
		e := join(t, cli, ls, 11, 1, old)
		next, loseNext := context.WithCancel(context.Background())
		e.Rebind(next)
		loseOld()
		select {
		case <-e.Done():
			t.Fatal("the old lease ended a rebound entry")
		default:
		}
		loseNext()
		<-e.Done()
	})
	t.Run("a delete by someone else ends it", func(t *testing.T) {
		e := join(t, cli, ls, 12, 1, context.Background())
		_, err := cli.Delete(context.Background(), e.Key())
		require.NoError(t, err)
		<-e.Done()
		require.ErrorIs(t, e.Err(), queue.ErrGone)
	})
	t.Run("a waiter whose key goes stops waiting", func(t *testing.T) {
		first := join(t, cli, ls, 13, 1, context.Background())
		waiter := join(t, cli, ls, 14, 1, context.Background())
		errc := make(chan error, 1)
		go func() { errc <- waiter.Wait(context.Background(), context.Background(), 1) }()
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
			es[i] = join(t, cli, ls, 10*round+i, 1, context.Background())
		}
		// The last starts out with more keys ahead than it watches.
		require.False(t, es[3].Admitted(1))
		errc := make(chan error, 1)
		go func() { errc <- es[3].Wait(ctx, context.Background(), 1) }()
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
