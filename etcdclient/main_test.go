package etcdclient_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/leasekit/leasekit/embedtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, embedtest.LeakOptions()...) }
