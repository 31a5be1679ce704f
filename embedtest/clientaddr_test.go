package embedtest_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/leasekit/leasekit/embedtest"
)

func TestWithClientAddr(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())

	c := embedtest.New(t, embedtest.WithClientAddr(addr))
	require.Equal(t, []string{"http://" + addr}, c.Endpoints())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
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
