package etcdlock_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/leasekit/leasekit/embedtest"
	"github.com/leasekit/leasekit/internal/benchkit"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(benchkit.Main(m), embedtest.LeakOptions()...) }
