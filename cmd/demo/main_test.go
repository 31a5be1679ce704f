package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"

	"github.com/leasekit/leasekit/embedtest"
)

func TestMain(m *testing.M) {
	tourSize = smallSize
	goleak.VerifyTestMain(m, embedtest.LeakOptions()...)
}

// logOnFailure prints what the tour printed if the test fails.
func logOnFailure(t *testing.T, out *bytes.Buffer) {
	t.Cleanup(func() {
		if t.Failed() {
			t.Log("output:\n" + out.String())
		}
	})
}

// The whole tour through run, as `go run ./cmd/demo --endpoints` runs it,
// against a three-member cluster that the tour did not start: the fault
// scenarios then put proxies of their own in front of its members.
func TestTour(t *testing.T) {
	c := embedtest.New(t, embedtest.WithMembers(3))
	var eps []string
	for _, ep := range c.Endpoints() {
		eps = append(eps, strings.TrimPrefix(ep, "http://"))
	}
	var out, errs bytes.Buffer
	logOnFailure(t, &out)
	ctx, cancel := context.WithTimeout(t.Context(), 55*time.Second)
	defer cancel()
	code := run(ctx, []string{"--endpoints", strings.Join(eps, ",")}, &out, &errs)
	require.Equal(t, 0, code, "stderr: %s", errs.String())
	for _, s := range scenarios {
		require.Contains(t, out.String(), s.title)
	}
	require.Contains(t, out.String(), "== Summary")
	require.NotContains(t, out.String(), "FAILED")

	// The tour removed what it wrote.
	resp, err := c.Client().Get(ctx, "/leasekit-demo/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	require.NoError(t, err)
	require.Zero(t, resp.Count)
}

// One part on the embedded cluster that run starts itself, where the
// proxies come from embedtest.Cluster.NewProxy.
func TestEmbedded(t *testing.T) {
	var out, errs bytes.Buffer
	logOnFailure(t, &out)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	code := run(ctx, []string{"--scenario", "fencing", "--members", "1"}, &out, &errs)
	require.Equal(t, 0, code, "stderr: %s", errs.String())
	require.Contains(t, out.String(), "embedded etcd of 1 member(s)")
	require.Contains(t, out.String(), "A is told")
	require.NotContains(t, out.String(), "Fair queue")
}

func TestFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		want string // in stdout+stderr
	}{
		{[]string{"--help"}, 0, "--scenario NAME"},
		{[]string{"--scenario", "nope"}, 2, `no scenario "nope"`},
		{[]string{"--endpoints", "10.0.0.1:2379"}, 2, "only loopback"},
		{[]string{"--endpoints", "https://127.0.0.1:2379"}, 2, "only plain http"},
		{[]string{"extra"}, 2, "unexpected argument"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var out, errs bytes.Buffer
			code := run(t.Context(), tc.args, &out, &errs)
			require.Equal(t, tc.code, code)
			require.Contains(t, out.String()+errs.String(), tc.want)
		})
	}
}
