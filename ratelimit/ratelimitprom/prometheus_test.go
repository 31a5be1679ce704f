package ratelimitprom_test

import (
	"context"
	"fmt"
	"log"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/leasekit/leasekit/embedtest"
	"github.com/leasekit/leasekit/internal/testkit"
	"github.com/leasekit/leasekit/ratelimit"
	"github.com/leasekit/leasekit/ratelimit/ratelimitprom"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, embedtest.LeakOptions()...) }

func TestNew(t *testing.T) {
	testkit.PromAdapter(t, ratelimitprom.New, ratelimitprom.ErrInvalidOption, "limiter", "outcome")
	_, err := ratelimitprom.New(nil, nil)
	require.ErrorIs(t, err, ratelimitprom.ErrNilRegisterer, "as before")
}

// values returns every series in reg as "name{label values} value".
func values(t testing.TB, reg *prometheus.Registry) map[string]float64 {
	mfs, err := reg.Gather()
	require.NoError(t, err)
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			v := m.GetCounter().GetValue() + m.GetGauge().GetValue()
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetValue())
			}
			out[mf.GetName()+"{"+strings.Join(labels, ",")+"}"] = v
		}
	}
	return out
}

func TestMetrics(t *testing.T) {
	_, err := ratelimitprom.New(nil, nil)
	require.ErrorIs(t, err, ratelimitprom.ErrNilRegisterer)

	reg := prometheus.NewRegistry()
	m, err := ratelimitprom.New(reg, nil)
	require.NoError(t, err)
	_, err = ratelimitprom.New(reg, nil)
	require.Error(t, err, "registering twice on one registry")

	c := embedtest.New(t)
	ctx := testkit.Context(t)
	clk := time.Unix(1_700_000_000, 0)
	now := func() time.Time { return clk }
	a, err := ratelimit.New(c.Client(), "api", ratelimit.PerSecond(10), ratelimit.WithMetrics(m), ratelimit.WithClock(now))
	require.NoError(t, err)
	defer a.Close()
	b, err := ratelimit.New(c.Client(), "api", ratelimit.PerSecond(10), ratelimit.WithMetrics(m), ratelimit.WithClock(now))
	require.NoError(t, err)
	defer b.Close()

	_, err = a.AllowN(ctx, "k", 8)
	require.NoError(t, err)
	_, err = b.AllowN(ctx, "k", 2) // conflict first: b never saw k
	require.NoError(t, err)
	_, err = b.AllowN(ctx, "k", 3)
	require.NoError(t, err)
	require.Equal(t, map[string]float64{
		"leasekit_ratelimit_allowed_total{api}":       10,
		"leasekit_ratelimit_denied_total{api}":        3,
		"leasekit_ratelimit_near_limit_total{api}":    1,
		"leasekit_ratelimit_cas_conflicts_total{api}": 1,
	}, values(t, reg))
}

// TestOutageMetrics cuts two limiters off from etcd with a proxy: the
// decisions their outage policies make without etcd are counted, and the
// unreachable gauge is up.
func TestOutageMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := ratelimitprom.New(reg, nil)
	require.NoError(t, err)
	c := embedtest.New(t)
	ctx := testkit.Context(t)
	p, cli := testkit.Proxied(t, c, 0)
	var lims []*ratelimit.Limiter
	for _, policy := range []ratelimit.OutagePolicy{ratelimit.FailOpen, ratelimit.FailClosed} {
		l, err := ratelimit.New(cli, policy.String(), ratelimit.PerSecond(10), ratelimit.WithMetrics(m),
			ratelimit.WithOutagePolicy(policy), ratelimit.WithCallTimeout(time.Second))
		require.NoError(t, err)
		defer l.Close()
		_, err = l.Allow(ctx, "k")
		require.NoError(t, err)
		lims = append(lims, l)
	}
	p.Cut()
	for _, l := range lims {
		for range 2 {
			_, err := l.AllowN(ctx, "k", 3)
			if l.Name() == "FailClosed" {
				require.ErrorIs(t, err, ratelimit.ErrUnavailable)
			} else {
				require.NoError(t, err)
			}
		}
	}
	require.Equal(t, map[string]float64{
		"leasekit_ratelimit_allowed_total{FailOpen}":                7,
		"leasekit_ratelimit_allowed_total{FailClosed}":              1,
		"leasekit_ratelimit_without_etcd_total{FailOpen,allowed}":   6,
		"leasekit_ratelimit_without_etcd_total{FailClosed,refused}": 6,
		"leasekit_ratelimit_etcd_unreachable{FailOpen}":             1,
		"leasekit_ratelimit_etcd_unreachable{FailClosed}":           1,
	}, values(t, reg))
	p.Heal()

	m.LiveInstances("local", 3)
	require.Equal(t, 3.0, values(t, reg)["leasekit_ratelimit_live_instances{local}"])
	m.Unreachable("local", false)
	require.Zero(t, values(t, reg)["leasekit_ratelimit_etcd_unreachable{local}"])
}

func Example() {
	ctx := context.Background()
	c, err := embedtest.Start(ctx)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	reg := prometheus.NewRegistry() // or prometheus.DefaultRegisterer
	m, err := ratelimitprom.New(reg, nil)
	if err != nil {
		log.Fatal(err)
	}
	lim, err := ratelimit.New(c.Client(), "partner-api", ratelimit.PerMinute(3), ratelimit.WithMetrics(m))
	if err != nil {
		log.Fatal(err)
	}
	defer lim.Close()
	for range 5 {
		if _, err := lim.Allow(ctx, "account-42"); err != nil {
			log.Fatal(err)
		}
	}

	mfs, err := reg.Gather()
	if err != nil {
		log.Fatal(err)
	}
	for _, mf := range mfs {
		for _, s := range mf.GetMetric() {
			fmt.Println(mf.GetName(), s.GetCounter().GetValue())
		}
	}
	// Output:
	// leasekit_ratelimit_allowed_total 3
	// leasekit_ratelimit_denied_total 2
	// leasekit_ratelimit_near_limit_total 1
}
