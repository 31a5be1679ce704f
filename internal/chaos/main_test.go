package chaos

import (
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/leasekit/leasekit/embedtest"
)

func TestMain(m *testing.M) {
	// The process-level fault test runs this binary again as its workers.
	if code, ok := procWorkerMain(); ok {
		os.Exit(code)
	}
	goleak.VerifyTestMain(m, embedtest.LeakOptions()...)
}
