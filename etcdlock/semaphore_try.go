package etcdlock

import (
	"context"
	"errors"
)

// TryAcquireWithOptions is TryAcquire with the options of LockOptions,
// AutoRefresh among them; opts.Key must be empty or the semaphore's
// name, and Timeout and RetryInterval do not apply. It takes a permit if
// one is free and nobody waits, and returns (nil, false, nil) otherwise,
// writing nothing to etcd.
func (s *Semaphore) TryAcquireWithOptions(ctx context.Context, opts LockOptions) (Lock, bool, error) {
	lk, err := s.l.acquireKind(ctx, s.kind(), opts, false)
	if errors.Is(err, errBusy) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	return lk, true, nil
}
