package etcdlock

import "errors"

// Errors returned by etcdlock. Check them with errors.Is: most are wrapped
// with detail.
var (
	// ErrNotHeld is returned by Release, Refresh and guarded calls on a
	// lock that is no longer held: released, expired, revoked or deleted.
	ErrNotHeld = errors.New("etcdlock: lock not held")
	// ErrLockLost is returned when a lock, or a wait for one, ends because
	// its lease or key is gone.
	ErrLockLost = errors.New("etcdlock: lock lost")
	// ErrInvalidKey is returned for a lock name that is empty, too long or
	// not valid UTF-8.
	ErrInvalidKey = errors.New("etcdlock: invalid key")
	// ErrInvalidTTL is returned for a TTL, timeout or interval that is
	// negative, zero where a TTL is needed, or above etcd's maximum.
	ErrInvalidTTL = errors.New("etcdlock: invalid TTL")
	// ErrInvalidMetadata is returned for metadata larger than
	// MaxMetadataBytes once encoded.
	ErrInvalidMetadata = errors.New("etcdlock: invalid metadata")
	// ErrInvalidOption is returned by New for an option that cannot work,
	// such as a nil client.
	ErrInvalidOption = errors.New("etcdlock: invalid option")
	// ErrClosed is returned by calls on a Locker after Close.
	ErrClosed = errors.New("etcdlock: locker closed")
)
