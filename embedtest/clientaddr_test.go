package embedtest_test

import (
	"net"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/leasekit/leasekit/embedtest"
	"github.com/leasekit/leasekit/internal/testkit"
)

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
