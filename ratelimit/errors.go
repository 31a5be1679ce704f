package ratelimit

import "errors"

// Errors returned by this package. Check them with errors.Is; the returned
// error wraps them with details.
var (
	// ErrNilClient is wrapped, beside ErrInvalidOption, by the error New
	// returns for a nil etcd client.
	//
	// Deprecated: Check for ErrInvalidOption, which every leasekit
	// constructor returns for a nil client, Option, logger or metrics.
	ErrNilClient = errors.New("ratelimit: nil etcd client")
	// ErrInvalidName is returned by New for an empty name, a name that is
	// not valid UTF-8 or one longer than MaxNameLen bytes.
	ErrInvalidName = errors.New("ratelimit: invalid name")
	// ErrInvalidKey is returned for an empty key, a key that is not valid
	// UTF-8 or one longer than MaxNameLen bytes.
	ErrInvalidKey = errors.New("ratelimit: invalid key")
	// ErrInvalidLimit is returned for a Limit with Rate < 1, Burst < 1,
	// Period <= 0, more than one event per nanosecond, or a bucket that
	// takes longer than MaxRefill to refill.
	ErrInvalidLimit = errors.New("ratelimit: invalid limit")
	// ErrInvalidN is returned by AllowN and WaitN for n < 1 or n > Burst:
	// such a request could never be allowed, so it fails at once instead of
	// waiting forever.
	ErrInvalidN = errors.New("ratelimit: invalid n")
	// ErrInvalidOption is returned by New for an option value that cannot
	// work, such as a negative batch window, and for a nil client, Option,
	// logger or metrics.
	ErrInvalidOption = errors.New("ratelimit: invalid option")
	// ErrUnavailable is returned, under the FailClosed outage policy, by
	// calls that need etcd while it is unreachable or refuses them. The
	// error also wraps etcd's error, or context.DeadlineExceeded for a call
	// that ran out of its call timeout. Nothing was allowed.
	ErrUnavailable = errors.New("ratelimit: etcd unavailable")
	// ErrClosed is returned by calls on a Limiter after Close.
	ErrClosed = errors.New("ratelimit: limiter closed")
)
