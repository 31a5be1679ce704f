package electionprom_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/leasekit/leasekit/election"
	"github.com/leasekit/leasekit/election/electionprom"
	"github.com/leasekit/leasekit/embedtest"
	"github.com/leasekit/leasekit/internal/testkit"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, embedtest.LeakOptions()...) }

func TestNew(t *testing.T) {
	testkit.PromAdapter(t, electionprom.New, electionprom.ErrInvalidOption, "reason")
}

// A campaign, a resignation and a failed campaign, as Prometheus sees
// them.
func Example() {
	cluster, err := embedtest.Start(context.Background())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer cluster.Close()
	reg := prometheus.NewRegistry()
	m, err := electionprom.New(reg, prometheus.Labels{"service": "billing"})
	if err != nil {
		fmt.Println(err)
		return
	}
	e, err := election.New(cluster.Client(), "billing-cron", election.WithMetrics(m))
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx := context.Background()
	if err := e.Campaign(ctx, "replica-1"); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("leading:", value(reg, "leasekit_election_leading"))
	if err := e.Resign(ctx); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("leading:", value(reg, "leasekit_election_leading"))

	expired, cancel := context.WithTimeout(ctx, time.Nanosecond)
	defer cancel()
	<-expired.Done()
	_ = e.Campaign(expired, "replica-1")
	fmt.Println("elected:", value(reg, "leasekit_election_elected_total"),
		"failed:", value(reg, "leasekit_election_campaign_failures_total"))
	// Output:
	// leading: 1
	// leading: 0
	// elected: 1 failed: 1
}

// value returns the value of the first series of the named gauge or
// counter in reg.
func value(reg *prometheus.Registry, name string) float64 {
	mfs, err := reg.Gather()
	if err != nil {
		return -1
	}
	for _, mf := range mfs {
		if mf.GetName() != name || len(mf.GetMetric()) == 0 {
			continue
		}
		m := mf.GetMetric()[0]
		if g := m.GetGauge(); g != nil {
			return g.GetValue()
		}
		return m.GetCounter().GetValue()
	}
	return -1
}
