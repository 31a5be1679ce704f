package benchkit

import (
	"context"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	recipe "go.etcd.io/etcd/client/v3/experimental/recipes"

	"github.com/leasekit/leasekit/election"
	"github.com/leasekit/leasekit/etcdlock"
)

// The implementations every comparison uses. Each worker of a leasekit
// implementation has a Locker of its own; each worker of an etcd reference
// has a concurrency.Session of its own, with the same 10s TTL.

// benchName is the one name every worker of a comparison takes.
const benchName = "bench"

// benchTTL is the TTL of every hold, session and candidacy.
const benchTTL = 10 * time.Second

// locker returns a Locker on cli keeping its keys under prefix.
func locker(cli *clientv3.Client, prefix string) (*etcdlock.Locker, func(), error) {
	l, err := etcdlock.New(cli, etcdlock.WithPrefix(prefix))
	if err != nil {
		return nil, nil, err
	}
	return l, func() { l.Close() }, nil
}

// LeasekitMutex is etcdlock's mutex. With autoRefresh, holds share the
// Locker's keepalive lease (LockWithOptions with AutoRefresh); without, each
// hold is the ADR's Lock(ctx, key, ttl): a lease of its own, granted per
// lock and revoked by Release.
func LeasekitMutex(autoRefresh bool) Impl {
	name := "leasekit"
	if !autoRefresh {
		name = "leasekit-own-lease"
	}
	return Impl{Name: name, Worker: func(cli *clientv3.Client, prefix string) (Take, func(), error) {
		l, closeFn, err := locker(cli, prefix)
		if err != nil {
			return nil, nil, err
		}
		return func(ctx context.Context, _ bool) (Release, error) {
			var lk etcdlock.Lock
			var err error
			if autoRefresh {
				lk, err = l.LockWithOptions(ctx, etcdlock.LockOptions{Key: benchName, TTL: benchTTL, AutoRefresh: true})
			} else {
				lk, err = l.Lock(ctx, benchName, benchTTL)
			}
			if err != nil {
				return nil, err
			}
			return lk.Release, nil
		}, closeFn, nil
	}}
}

// ConcurrencyMutex is etcd's concurrency.Mutex (client v3.7.3). With
// sessionPerLock, every lock makes a session of its own and closes it after
// Unlock, which is how the ADR's per-lock TTL is had with it; otherwise
// the worker's one session serves every lock.
func ConcurrencyMutex(sessionPerLock bool) Impl {
	name := "concurrency.Mutex"
	if sessionPerLock {
		name = "concurrency.Mutex-session-per-lock"
	}
	return Impl{Name: name, Worker: func(cli *clientv3.Client, prefix string) (Take, func(), error) {
		var shared *concurrency.Session
		var closeFn func()
		if !sessionPerLock {
			s, err := concurrency.NewSession(cli, concurrency.WithTTL(int(benchTTL/time.Second)))
			if err != nil {
				return nil, nil, err
			}
			shared, closeFn = s, func() { s.Close() }
		}
		return func(ctx context.Context, _ bool) (Release, error) {
			s := shared
			if sessionPerLock {
				var err error
				s, err = concurrency.NewSession(cli, concurrency.WithTTL(int(benchTTL/time.Second)))
				if err != nil {
					return nil, err
				}
			}
			m := concurrency.NewMutex(s, prefix+benchName+"/")
			if err := m.Lock(ctx); err != nil {
				if sessionPerLock {
					s.Close()
				}
				return nil, err
			}
			return func(ctx context.Context) error {
				err := m.Unlock(ctx)
				if sessionPerLock {
					s.Close()
				}
				return err
			}, nil
		}, closeFn, nil
	}}
}

// LeasekitSemaphore is etcdlock's semaphore of n permits, with AutoRefresh.
func LeasekitSemaphore(n int) Impl {
	return Impl{Name: "leasekit", Worker: func(cli *clientv3.Client, prefix string) (Take, func(), error) {
		l, closeFn, err := locker(cli, prefix)
		if err != nil {
			return nil, nil, err
		}
		s, err := l.Semaphore(benchName, n)
		if err != nil {
			closeFn()
			return nil, nil, err
		}
		return func(ctx context.Context, _ bool) (Release, error) {
			p, err := s.AcquireWithOptions(ctx, etcdlock.LockOptions{TTL: benchTTL, AutoRefresh: true})
			if err != nil {
				return nil, err
			}
			return p.Release, nil
		}, closeFn, nil
	}}
}

// LeasekitRWMutex is etcdlock's RWMutex, with AutoRefresh.
func LeasekitRWMutex() Impl {
	return Impl{Name: "leasekit", Worker: func(cli *clientv3.Client, prefix string) (Take, func(), error) {
		l, closeFn, err := locker(cli, prefix)
		if err != nil {
			return nil, nil, err
		}
		m, err := l.RWMutex(benchName)
		if err != nil {
			closeFn()
			return nil, nil, err
		}
		opts := etcdlock.LockOptions{TTL: benchTTL, AutoRefresh: true}
		return func(ctx context.Context, write bool) (Release, error) {
			var lk etcdlock.Lock
			var err error
			if write {
				lk, err = m.LockWithOptions(ctx, opts)
			} else {
				lk, err = m.RLockWithOptions(ctx, opts)
			}
			if err != nil {
				return nil, err
			}
			return lk.Release, nil
		}, closeFn, nil
	}}
}

// RecipeRWMutex is etcd's experimental recipe.RWMutex on the worker's
// session. It takes no context, so it would hang on an unreachable etcd;
// the benchmarks' etcd stays up.
func RecipeRWMutex() Impl {
	return Impl{Name: "recipe.RWMutex", Worker: func(cli *clientv3.Client, prefix string) (Take, func(), error) {
		s, err := concurrency.NewSession(cli, concurrency.WithTTL(int(benchTTL/time.Second)))
		if err != nil {
			return nil, nil, err
		}
		return func(_ context.Context, write bool) (Release, error) {
			m := recipe.NewRWMutex(s, prefix+benchName)
			if write {
				if err := m.Lock(); err != nil {
					return nil, err
				}
				return func(context.Context) error { return m.Unlock() }, nil
			}
			if err := m.RLock(); err != nil {
				return nil, err
			}
			return func(context.Context) error { return m.RUnlock() }, nil
		}, func() { s.Close() }, nil
	}}
}

// LeasekitElection is election.Election.
func LeasekitElection() Elector {
	return Elector{Name: "leasekit", Candidate: func(cli *clientv3.Client, prefix string) (Candidate, string, func(), error) {
		e, err := election.New(cli, benchName, election.WithPrefix(prefix), election.WithTTL(benchTTL))
		if err != nil {
			return nil, "", nil, err
		}
		return e, e.KeyPrefix(), nil, nil
	}}
}

// ConcurrencyElection is etcd's concurrency.Election (client v3.7.3) on a
// session of the candidate's own.
func ConcurrencyElection() Elector {
	return Elector{Name: "concurrency.Election", Candidate: func(cli *clientv3.Client, prefix string) (Candidate, string, func(), error) {
		s, err := concurrency.NewSession(cli, concurrency.WithTTL(int(benchTTL/time.Second)))
		if err != nil {
			return nil, "", nil, err
		}
		return concurrency.NewElection(s, prefix+benchName), prefix + benchName + "/", func() { s.Close() }, nil
	}}
}
