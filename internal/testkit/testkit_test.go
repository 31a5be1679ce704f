package testkit_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"

	"github.com/leasekit/leasekit/embedtest"
	"github.com/leasekit/leasekit/internal/testkit"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, embedtest.LeakOptions()...) }

func TestWaitKeys(t *testing.T) {
	c := embedtest.New(t)
	cli := c.Client()
	ctx := testkit.Context(t)
	_, err := cli.Put(ctx, "/p/b", "1")
	require.NoError(t, err)

	// Keys that come after the wait started wake it, in create order; a
	// key written again keeps its place.
	got := make(chan []string, 1)
	go func() {
		keys, err := testkit.WaitKeys(ctx, cli, "/p/", func(keys []string) bool { return len(keys) == 3 })
		if err != nil {
			keys = []string{err.Error()}
		}
		got <- keys
	}()
	for _, k := range []string{"/p/a", "/p/b", "/p/c", "/q/x"} {
		_, err := cli.Put(ctx, k, "2")
		require.NoError(t, err)
	}
	require.Equal(t, []string{"/p/b", "/p/a", "/p/c"}, testkit.Recv(t, got))
	require.Equal(t, 3, testkit.CountKeys(t, cli, "/p/"))

	// Deletes are seen too.
	go func() {
		_, err := cli.Delete(context.Background(), "/p/", clientv3.WithPrefix())
		if err != nil {
			t.Error(err)
		}
	}()
	require.Empty(t, testkit.AwaitKeys(t, cli, "/p/", 0))
	require.Equal(t, []string{"/q/x"}, testkit.AwaitKeysAtLeast(t, cli, "/q/", 1))

	// A wait that is never satisfied ends with its context.
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	_, err = testkit.WaitKeys(short, cli, "/p/", func(keys []string) bool { return len(keys) == 1 })
	require.ErrorIs(t, err, context.DeadlineExceeded)
}

func TestRetry(t *testing.T) {
	ctx := testkit.Context(t)
	calls := 0
	require.NoError(t, testkit.Retry(ctx, func(attempt context.Context) error {
		calls++
		_, bounded := attempt.Deadline()
		require.True(t, bounded, "each attempt has a deadline")
		if calls < 3 {
			return errors.New("not yet")
		}
		return nil
	}))
	require.Equal(t, 3, calls)

	short, cancel := context.WithTimeout(ctx, 30*time.Millisecond)
	defer cancel()
	require.EqualError(t, testkit.Retry(short, func(context.Context) error { return errors.New("never") }), "never")
}

// A wait through a member that loses its leader starts over once the
// member is back, and sees the keys written meanwhile.
func TestWaitKeysThroughAPartition(t *testing.T) {
	c := embedtest.New(t, embedtest.WithMembers(3))
	ctx := testkit.Context(t)
	cli, other := testkit.MemberClient(t, c, 0), testkit.MemberClient(t, c, 1)
	got := make(chan error, 1)
	go func() {
		_, err := testkit.WaitKeys(ctx, cli, "/p/", func(keys []string) bool { return len(keys) == 1 })
		got <- err
	}()
	require.NoError(t, c.Partition(0))
	_, err := c.WaitLeader(ctx)
	require.NoError(t, err)
	_, err = other.Put(ctx, "/p/k", "v")
	require.NoError(t, err)
	require.NoError(t, c.Heal(0))
	require.NoError(t, testkit.Recv(t, got))
}
