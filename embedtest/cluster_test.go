package embedtest_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/leasekit/leasekit/embedtest"
)

func TestSingleMemberPutGet(t *testing.T) {
	c := embedtest.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
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
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.Equal(t, 3, c.Members())
	_, err := c.Client().Put(ctx, "k", "v1")
	require.NoError(t, err)

	m := c.Member(1)
	require.NoError(t, m.Kill())
	require.ErrorIs(t, m.Stop(), embedtest.ErrMemberStopped)
	_, err = c.Client().Put(ctx, "k", "v2")
	require.NoError(t, err)
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
		require.NoError(t, c.Close())
		require.NoError(t, c.Close())
		_, err = c.NewClient()
		require.ErrorIs(t, err, embedtest.ErrClosed)
	})
}
