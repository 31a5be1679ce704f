package embedtest_test

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/leasekit/leasekit/embedtest"
	"github.com/leasekit/leasekit/internal/testkit"
)

func TestSingleMemberPutGet(t *testing.T) {
	c := embedtest.New(t)
	ctx := testkit.Context(t)
	_, err := c.Client().Put(ctx, "k", "v")
	require.NoError(t, err)
	resp, err := c.Client().Get(ctx, "k")
	require.NoError(t, err)
	require.Len(t, resp.Kvs, 1)
	require.Equal(t, "v", string(resp.Kvs[0].Value))
	require.Len(t, c.Endpoints(), 1)
}

func TestThreeMembersStopRestart(t *testing.T) {
	c := embedtest.New(t, embedtest.WithMembers(3))
	ctx := testkit.Context(t)
	require.Equal(t, 3, c.Members())
	_, err := c.Client().Put(ctx, "k", "v1")
	require.NoError(t, err)

	m := c.Member(1)
	require.NoError(t, m.Kill())
	require.ErrorIs(t, m.Stop(), embedtest.ErrMemberStopped)
	// If m led, a write forwarded to it would wait out etcd's request
	// timeout; let the others elect a leader first.
	_, err = c.WaitLeader(ctx)
	require.NoError(t, err)
	// The shared client may still send on its connection to m and see it
	// break (Unavailable), so retry.
	require.NoError(t, testkit.Retry(ctx, func(ctx context.Context) error {
		_, err := c.Client().Put(ctx, "k", "v2")
		return err
	}))
	require.NoError(t, m.Restart(ctx))
	require.ErrorIs(t, m.Restart(ctx), embedtest.ErrMemberRunning)

	cli, err := c.NewClient()
	require.NoError(t, err)
	_ = cli
}

func TestBadInput(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		opts []embedtest.Option
	}{
		{"zero members", []embedtest.Option{embedtest.WithMembers(0)}},
		{"negative members", []embedtest.Option{embedtest.WithMembers(-1)}},
		{"too many members", []embedtest.Option{embedtest.WithMembers(100)}},
		{"election below 5 ticks", []embedtest.Option{embedtest.WithElection(10*time.Millisecond, 20*time.Millisecond)}},
		{"sub-millisecond tick", []embedtest.Option{embedtest.WithElection(500*time.Microsecond, 100*time.Millisecond)}},
		{"nil Option", []embedtest.Option{nil}},
		{"nil logger", []embedtest.Option{embedtest.WithLogger(nil)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := embedtest.Start(ctx, tc.opts...)
			require.ErrorIs(t, err, embedtest.ErrInvalidOption)
			require.Nil(t, c)
		})
	}
	t.Run("cancelled ctx", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		c, err := embedtest.Start(cctx)
		require.True(t, errors.Is(err, context.Canceled), "err = %v", err)
		require.Nil(t, c)
	})
	t.Run("close twice", func(t *testing.T) {
		c, err := embedtest.Start(ctx)
		require.NoError(t, err)
		// Of two at once, each returns nil once the member has stopped.
		closes := make(chan error, 2)
		for range 2 {
			go func() {
				err := c.Close()
				if err == nil && c.Member(0).Running() {
					err = errors.New("Close returned with the member running")
				}
				closes <- err
			}()
		}
		require.NoError(t, <-closes)
		require.NoError(t, <-closes)
		require.NoError(t, c.Close())
		_, err = c.NewClient()
		require.ErrorIs(t, err, embedtest.ErrClosed)
	})
}

// TestBadUse checks that misuse gets a clear error, never a panic or a
// hang: member indexes out of range, stopped members, cancelled contexts
// and calls after Close.
func TestBadUse(t *testing.T) {
	ctx := testkit.Context(t)
	cancelled, cancel := context.WithCancel(ctx)
	cancel()

	// Member 2 of live is stopped; closed has been closed.
	live := embedtest.New(t, embedtest.WithMembers(3))
	require.NoError(t, live.Member(2).Stop())
	closed, err := embedtest.Start(ctx)
	require.NoError(t, err)
	require.NoError(t, closed.Close())

	proxy := func(c *embedtest.Cluster, i int) error {
		p, err := c.NewProxy(i)
		if !assert.Nil(t, p, "NewProxy(%d) returned a proxy and %v", i, err) {
			p.Close()
		}
		return err
	}
	waitLeader := func(ctx context.Context, c *embedtest.Cluster) error {
		_, err := c.WaitLeader(ctx)
		return err
	}
	for _, tc := range []struct {
		name string
		do   func() error
		want error
	}{
		{"Partition(-1)", func() error { return live.Partition(-1) }, embedtest.ErrNoMember},
		{"Partition(3)", func() error { return live.Partition(3) }, embedtest.ErrNoMember},
		{"Heal(3)", func() error { return live.Heal(3) }, embedtest.ErrNoMember},
		{"MoveLeader(3)", func() error { return live.MoveLeader(ctx, 3) }, embedtest.ErrNoMember},
		{"NewProxy(-1)", func() error { return proxy(live, -1) }, embedtest.ErrNoMember},

		{"Partition(stopped)", func() error { return live.Partition(2) }, embedtest.ErrMemberStopped},
		{"MoveLeader(stopped)", func() error { return live.MoveLeader(ctx, 2) }, embedtest.ErrMemberStopped},
		{"Stop(stopped)", live.Member(2).Stop, embedtest.ErrMemberStopped},
		{"Kill(stopped)", live.Member(2).Kill, embedtest.ErrMemberStopped},
		{"KillAndWipe(stopped)", live.Member(2).KillAndWipe, embedtest.ErrMemberStopped},
		{"Restart(running)", func() error { return live.Member(0).Restart(ctx) }, embedtest.ErrMemberRunning},
		{"Rejoin(running)", func() error { return live.Member(0).Rejoin(ctx) }, embedtest.ErrMemberRunning},

		{"WaitLeader(cancelled)", func() error { return waitLeader(cancelled, live) }, context.Canceled},
		{"MoveLeader(cancelled)", func() error { return live.MoveLeader(cancelled, 1) }, context.Canceled},
		{"Restart(cancelled)", func() error { return live.Member(2).Restart(cancelled) }, context.Canceled},
		{"Rejoin(cancelled)", func() error { return live.Member(2).Rejoin(cancelled) }, context.Canceled},

		{"WaitLeader(closed)", func() error { return waitLeader(ctx, closed) }, embedtest.ErrClosed},
		{"MoveLeader(closed)", func() error { return closed.MoveLeader(ctx, 0) }, embedtest.ErrClosed},
		{"Partition(closed)", func() error { return closed.Partition(0) }, embedtest.ErrClosed},
		{"Heal(closed)", func() error { return closed.Heal(0) }, embedtest.ErrClosed},
		{"NewProxy(closed)", func() error { return proxy(closed, 0) }, embedtest.ErrClosed},
		{"Stop(closed)", closed.Member(0).Stop, embedtest.ErrClosed},
		{"Kill(closed)", closed.Member(0).Kill, embedtest.ErrClosed},
		{"KillAndWipe(closed)", closed.Member(0).KillAndWipe, embedtest.ErrClosed},
		{"Restart(closed)", func() error { return closed.Member(0).Restart(ctx) }, embedtest.ErrClosed},
		{"Rejoin(closed)", func() error { return closed.Member(0).Rejoin(ctx) }, embedtest.ErrClosed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.ErrorIs(t, tc.do(), tc.want)
		})
	}

	// The stopped member was left alone by the failed calls above.
	require.NoError(t, live.Member(2).Restart(ctx))
	_, err = live.WaitLeader(ctx)
	require.NoError(t, err)
}

func TestWithClientAddr(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())

	c := embedtest.New(t, embedtest.WithClientAddr(addr))
	require.Equal(t, []string{"http://" + addr}, c.Endpoints())
	ctx := testkit.Context(t)
	_, err = c.Client().Put(ctx, "k", "v")
	require.NoError(t, err)

	// Taken now: Start fails instead of picking another port.
	_, err = embedtest.Start(ctx, embedtest.WithClientAddr(addr))
	require.Error(t, err)
	for _, opts := range [][]embedtest.Option{
		{embedtest.WithClientAddr(addr), embedtest.WithMembers(3)},
		{embedtest.WithClientAddr("no-port")},
	} {
		_, err = embedtest.Start(ctx, opts...)
		require.ErrorIs(t, err, embedtest.ErrInvalidOption)
	}
}
