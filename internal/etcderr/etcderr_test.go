package etcderr_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.uber.org/goleak"

	"github.com/leasekit/leasekit/internal/etcderr"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		err                           error
		ambiguous, transient, refused bool
	}{
		{nil, false, false, false},
		{context.DeadlineExceeded, true, true, false},
		{fmt.Errorf("x: %w", context.Canceled), true, true, false},
		{rpctypes.ErrGRPCNoLeader, true, true, false},
		{rpctypes.ErrNoLeader, true, true, false},
		{rpctypes.ErrTimeoutDueToLeaderFail, true, true, false},
		{fmt.Errorf("%w: closed", etcderr.ErrWatch), true, true, false},
		{rpctypes.ErrGRPCPermissionDenied, false, false, true},
		{rpctypes.ErrPermissionDenied, false, false, true},
		{rpctypes.ErrAuthFailed, false, false, true},
		{rpctypes.ErrAuthOldRevision, false, false, false},
		{rpctypes.ErrLeaseNotFound, false, false, false},
		// An error etcd did not answer with may hide an applied write.
		{errors.New("other"), true, true, false},
	} {
		require.Equal(t, tc.ambiguous, etcderr.Ambiguous(tc.err), "Ambiguous(%v)", tc.err)
		require.Equal(t, tc.transient, etcderr.Transient(tc.err), "Transient(%v)", tc.err)
		require.Equal(t, tc.refused, etcderr.Refused(tc.err), "Refused(%v)", tc.err)
	}
}

func TestBackoffDoublesUpToMax(t *testing.T) {
	b := etcderr.Backoff{Min: time.Nanosecond, Max: 5 * time.Nanosecond}
	var got []time.Duration
	for range 5 {
		got = append(got, b.Delay())
		require.NoError(t, b.Wait(context.Background()))
	}
	require.Equal(t, []time.Duration{1, 2, 4, 5, 5}, got)
	b.Reset()
	require.Equal(t, time.Nanosecond, b.Delay())
}

func TestBackoffEndsWithCtx(t *testing.T) {
	b := etcderr.Backoff{Min: time.Hour, Max: time.Hour}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.ErrorIs(t, b.Wait(ctx), context.Canceled)
}

func TestCleanupKeepsValuesNotCancellation(t *testing.T) {
	type key struct{}
	parent, cancel := context.WithCancel(context.WithValue(context.Background(), key{}, "v"))
	cancel()
	ctx, stop := etcderr.Cleanup(parent)
	defer stop()
	require.NoError(t, ctx.Err())
	require.Equal(t, "v", ctx.Value(key{}))
	deadline, ok := ctx.Deadline()
	require.True(t, ok)
	require.WithinDuration(t, time.Now().Add(etcderr.CleanupTimeout), deadline, time.Second)
}

func TestReason(t *testing.T) {
	lost := errors.New("lost")
	for err, want := range map[error]string{
		fmt.Errorf("campaign: %w", context.DeadlineExceeded): "timeout",
		fmt.Errorf("lock: %w", context.Canceled):             "canceled",
		fmt.Errorf("lock: %w: lease expired", lost):          "lost",
		rpctypes.ErrGRPCPermissionDenied:                     "error",
	} {
		require.Equal(t, want, etcderr.Reason(err, lost), "Reason(%v)", err)
	}
}

func TestSleep(t *testing.T) {
	ctx := context.Background()
	require.NoError(t, etcderr.Sleep(ctx, 0))
	require.NoError(t, etcderr.Sleep(ctx, -time.Second))
	require.NoError(t, etcderr.Sleep(ctx, time.Millisecond))
	ended, cancel := context.WithCancel(ctx)
	cancel()
	require.ErrorIs(t, etcderr.Sleep(ended, 0), context.Canceled)
	require.ErrorIs(t, etcderr.Sleep(ended, time.Hour), context.Canceled)
}
