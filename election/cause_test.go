package election_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/leasekit/leasekit/election"
	"github.com/leasekit/leasekit/embedtest"
	"github.com/leasekit/leasekit/internal/testkit"
)

// Run says why each term ended, both as the cause of the duties' ctx and
// to OnStoppedLeadingCause. (A lease lost to its deadline on a cut
// network: TestLeaderCutOff.)
func TestRunStopCauses(t *testing.T) {
	c := embedtest.New(t)
	admin := c.Client()
	errMine := errors.New("shutting down")
	for _, tc := range []struct {
		name string
		// returns makes the duties return at once instead of waiting
		// for their ctx.
		returns bool
		// end ends the term that e leads; stop ends Run's ctx.
		end  func(t *testing.T, e *election.Election, stop context.CancelCauseFunc)
		want []error
	}{
		{"duties return", true, nil, []error{election.ErrDutiesReturned}},
		{"resign", false, func(t *testing.T, e *election.Election, _ context.CancelCauseFunc) {
			require.NoError(t, e.Resign(testkit.Context(t)))
		}, []error{election.ErrResigned}},
		{"key deleted", false, func(t *testing.T, e *election.Election, _ context.CancelCauseFunc) {
			_, err := admin.Delete(testkit.Context(t), e.EtcdKey())
			require.NoError(t, err)
		}, []error{election.ErrLost}},
		{"lease revoked", false, func(t *testing.T, e *election.Election, _ context.CancelCauseFunc) {
			_, err := admin.Revoke(testkit.Context(t), clientv3.LeaseID(leaseOf(t, admin, e.EtcdKey())))
			require.NoError(t, err)
		}, []error{election.ErrLost}},
		{"Run's ctx ended", false, func(t *testing.T, _ *election.Election, stop context.CancelCauseFunc) {
			stop(errMine)
		}, []error{election.ErrStopped, errMine}},
		// Run's ctx has a deadline (deadline below), which the duties'
		// ctx has too.
		{"Run's deadline passed", false, nil, []error{election.ErrStopped, context.DeadlineExceeded}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := candidate(t, c, "cause-"+tc.name)
			parent := testkit.Context(t)
			if tc.end == nil && !tc.returns {
				var cancel context.CancelFunc
				parent, cancel = context.WithTimeout(parent, 2*time.Second)
				defer cancel()
			}
			rctx, stop := context.WithCancelCause(parent)
			defer stop(nil)
			started := make(chan struct{}, 1)
			inDuties := make(chan error, 1)
			stopped := make(chan error, 10)
			done := make(chan error, 1)
			go func() {
				done <- e.Run(rctx, election.Callbacks{
					OnStartedLeading: func(ctx context.Context) {
						select {
						case started <- struct{}{}:
						default: // a later term
						}
						if tc.returns {
							return
						}
						d1, ok1 := ctx.Deadline()
						d2, ok2 := rctx.Deadline()
						assert.Equal(t, ok2, ok1, "the duties' ctx has a deadline as Run's has")
						assert.Equal(t, d2, d1, "the duties' deadline is Run's")
						<-ctx.Done()
						select {
						case inDuties <- context.Cause(ctx):
						default:
						}
					},
					OnStoppedLeadingCause: func(cause error) { stopped <- cause },
				})
			}()
			testkit.Recv(t, started)
			if tc.end != nil {
				tc.end(t, e, stop)
			}
			cause := testkit.Recv(t, stopped)
			for _, want := range tc.want {
				require.ErrorIs(t, cause, want)
			}
			if !tc.returns {
				require.Equal(t, cause, testkit.Recv(t, inDuties), "the duties' ctx has the same cause")
			}
			stop(nil)
			require.NoError(t, testkit.Recv(t, done))
		})
	}
}
