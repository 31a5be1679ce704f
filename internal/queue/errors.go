package queue

import (
	"errors"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Transient reports whether an error of etcd's may pass if the call is
// tried again: no leader, a timeout inside etcd, a closed or broken watch,
// a lost connection, a cancelled or timed-out call. It is the test the
// queue's own waits use.
func Transient(err error) bool {
	return transient(err)
}

// Refused reports whether etcd definitely refused a call, so that trying
// it again cannot help: permission denied, failed authentication (an
// invalid token or user that clientv3's token refresh did not cure), or
// an invalid argument. A transient error is never a refusal, nor is
// rpctypes.ErrAuthOldRevision, which clientv3 cures by refreshing its
// token.
func Refused(err error) bool {
	if err == nil || transient(err) || errors.Is(err, rpctypes.ErrAuthOldRevision) {
		return false
	}
	code := status.Code(err)
	var ee rpctypes.EtcdError
	if errors.As(err, &ee) {
		code = ee.Code()
	}
	switch code {
	case codes.PermissionDenied, codes.Unauthenticated, codes.InvalidArgument:
		return true
	}
	return false
}
