package embedtest_test

import (
	"context"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/leasekit/leasekit/embedtest"
	"github.com/leasekit/leasekit/internal/testkit"
)

func TestProxyCutHealLatency(t *testing.T) {
	c := embedtest.New(t)
	ctx := testkit.Context(t)
	p, err := c.NewProxy(0)
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(p.Endpoint(), "http://127.0.0.1:"), p.Endpoint())

	cli, err := c.NewClient(clientv3.Config{Endpoints: []string{p.Endpoint()}})
	require.NoError(t, err)
	_, err = cli.Put(ctx, "k", "1")
	require.NoError(t, err)

	p.Cut()
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	_, err = cli.Put(short, "k", "2")
	cancel()
	require.ErrorIs(t, err, context.DeadlineExceeded, "a cut proxy is silent, not closed")

	p.Heal()
	require.NoError(t, testkit.Retry(ctx, func(ctx context.Context) error {
		_, err := cli.Put(ctx, "k", "3")
		return err
	}))

	const latency = 50 * time.Millisecond
	p.SetLatency(latency)
	start := time.Now()
	_, err = cli.Put(ctx, "k", "4")
	require.NoError(t, err)
	require.GreaterOrEqual(t, time.Since(start), latency)
	p.SetLatency(0)

	require.NoError(t, p.Close())
	require.NoError(t, p.Close(), "Close twice")
}

// TestProxyRaw checks the proxy's byte handling without etcd: data in both
// directions, silence while cut, and a half close passed on.
func TestProxyRaw(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	echoed := make(chan struct{})
	go func() {
		defer close(echoed)
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		io.Copy(conn, conn) // echo until the client half-closes
	}()

	p, err := embedtest.StartProxy(ln.Addr().String())
	require.NoError(t, err)
	defer p.Close()
	conn, err := net.Dial("tcp", strings.TrimPrefix(p.Endpoint(), "http://"))
	require.NoError(t, err)
	defer conn.Close()

	buf := make([]byte, 5)
	_, err = conn.Write([]byte("hello"))
	require.NoError(t, err)
	_, err = io.ReadFull(conn, buf)
	require.NoError(t, err)
	require.Equal(t, "hello", string(buf))

	p.Cut()
	_, err = conn.Write([]byte("lost!"))
	require.NoError(t, err, "the connection stays open while cut")
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(100*time.Millisecond)))
	_, err = conn.Read(buf)
	var ne net.Error
	require.ErrorAs(t, err, &ne)
	require.True(t, ne.Timeout(), "silence, not an error: %v", err)

	// The stream lost bytes, so Heal closes it; a new one works.
	p.Heal()
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(10*time.Second)))
	_, err = conn.Read(buf)
	require.Error(t, err, "Heal closes a connection that lost data")
	<-echoed
}

func TestProxyHalfClose(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		b, _ := io.ReadAll(conn) // until the client's half close
		conn.Write([]byte(strings.ToUpper(string(b))))
	}()

	p, err := embedtest.StartProxy(ln.Addr().String())
	require.NoError(t, err)
	defer p.Close()
	p.SetLatency(10 * time.Millisecond)
	conn, err := net.Dial("tcp", strings.TrimPrefix(p.Endpoint(), "http://"))
	require.NoError(t, err)
	defer conn.Close()
	_, err = conn.Write([]byte("shout"))
	require.NoError(t, err)
	require.NoError(t, conn.(*net.TCPConn).CloseWrite())
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(10*time.Second)))
	b, err := io.ReadAll(conn)
	require.NoError(t, err)
	require.Equal(t, "SHOUT", string(b), "data before a half close arrives, then EOF")
}

func TestProxyClosedWithCluster(t *testing.T) {
	c, err := embedtest.Start(testkit.Context(t))
	require.NoError(t, err)
	p, err := c.NewProxy(0)
	require.NoError(t, err)
	cli, err := c.NewClient(clientv3.Config{Endpoints: []string{p.Endpoint()}})
	require.NoError(t, err)
	_, err = cli.Put(testkit.Context(t), "k", "v")
	require.NoError(t, err)
	require.NoError(t, c.Close())
	require.NoError(t, p.Close(), "already closed by the cluster")
	_, err = net.Dial("tcp", strings.TrimPrefix(p.Endpoint(), "http://"))
	require.Error(t, err, "the listener is gone")
}

func TestStartProxyBadTarget(t *testing.T) {
	for _, target := range []string{"", "127.0.0.1", "http://127.0.0.1:2379"} {
		p, err := embedtest.StartProxy(target)
		require.ErrorIs(t, err, embedtest.ErrInvalidOption, target)
		require.Nil(t, p)
	}
}
