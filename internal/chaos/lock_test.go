package chaos

import (
	"context"
	"fmt"
	"math/rand"
	"strconv"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/leasekit/leasekit/etcdlock"
	"github.com/leasekit/leasekit/internal/lease"
	"github.com/leasekit/leasekit/internal/testkit"
)

// lockName is the lock every worker takes.
const lockName = "chaos/counter"

// clientMeta is the metadata field that names a worker in its holds, so
// that the nemesis knows whose lease it revokes.
const clientMeta = "chaos-client"

// TestLockUnderFaults runs workers that take one etcdlock lock and do
// guarded read-modify-writes of a counter under it, while a nemesis cuts
// workers off, slows them, kills, stops, restarts and partitions etcd
// members, moves the etcd leader and revokes the holder's lease. Half the
// workers use AutoRefresh locks, half TTL locks on a lease of their own.
func TestLockUnderFaults(t *testing.T) {
	const workers = 4
	s := newSuite(t, workers, "/chaos/lock/")
	admin, err := etcdlock.New(s.admin)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()

	var stats tally
	lockers := make([]*etcdlock.Locker, workers)
	var run []func(context.Context)
	for i := range workers {
		l, err := etcdlock.New(s.clients[i], etcdlock.WithMetadata(map[string]string{clientMeta: strconv.Itoa(i)}))
		if err != nil {
			t.Fatal(err)
		}
		lockers[i] = l
		opts := etcdlock.LockOptions{Key: lockName, TTL: 2 * time.Second}
		if i%2 == 0 {
			opts = etcdlock.LockOptions{Key: lockName, TTL: time.Second, AutoRefresh: true}
		}
		w := &lockWorker{worker: newWorker(s, i, &stats), locker: l, opts: opts}
		run = append(run, w.run)
	}

	nem := &Nemesis{
		Cluster: s.c, Admin: s.admin, Proxies: s.proxies, Rec: s.rec, Clock: s.clock,
		Rand:   rand.New(rand.NewSource(s.rng.Int63())),
		CutFor: 3 * time.Second, FaultFor: time.Second, Latency: 100 * time.Millisecond,
		Holder: func(ctx context.Context) (int, clientv3.LeaseID, bool, error) {
			h, c, ok, err := lockHolder(ctx, admin, lockName)
			return c, clientv3.LeaseID(h.LeaseID), ok, err
		},
	}
	s.loop(nem, rounds(t, 8), s.schedule(0), run)

	// Close releases what is still held; keys of lost leases go when etcd
	// expires them. None may be left behind.
	for i, l := range lockers {
		if err := l.Close(); err != nil {
			t.Logf("close locker %d: %v", i, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if _, err := testkit.WaitKeys(ctx, s.admin, etcdlock.DefaultPrefix, empty); err != nil {
		t.Errorf("lock keys left behind: %v", err)
	}
	s.check()
	t.Logf("worker outcomes:\n%s", stats.String())
}

// lockHolder returns the holder of the lock name and the client its
// metadata names; ok is false when the lock is free.
func lockHolder(ctx context.Context, admin *etcdlock.Locker, name string) (h etcdlock.Entry, client int, ok bool, err error) {
	info, err := admin.Inspect(ctx, name)
	if err != nil || info.Holder == nil {
		return etcdlock.Entry{}, 0, false, err
	}
	c, err := strconv.Atoi(info.Holder.Metadata[clientMeta])
	if err != nil {
		return etcdlock.Entry{}, 0, false, fmt.Errorf("holder %s has no client: %w", info.Holder.EtcdKey, err)
	}
	return *info.Holder, c, true, nil
}

type lockWorker struct {
	worker
	locker *etcdlock.Locker
	opts   etcdlock.LockOptions
}

func (w *lockWorker) run(ctx context.Context) { repeat(ctx, w.once) }

// once takes the lock, does one to three guarded writes and releases it.
// It reports whether a write committed.
func (w *lockWorker) once(ctx context.Context) bool {
	s := w.s
	var lk etcdlock.Lock
	acqCall := s.clock.Now()
	err := s.wd.Do(ctx, "Lock", acquireTimeout, func(ctx context.Context) (err error) {
		lk, err = w.locker.LockWithOptions(ctx, w.opts)
		return err
	})
	acqRet := s.clock.Now()
	if err != nil {
		w.stats.add("lock: " + classify(err))
		return false
	}
	h := Hold{Client: w.id, Token: lk.Token(), AcqCall: acqCall, AcqRet: acqRet, Alive: acqCall,
		LeaseFloor: acqCall, ReleaseCall: Never}
	// The lease cannot end before its client-side deadline, at which the
	// library revokes it itself; etcd expires it no earlier than ExpiresAt.
	floor := func() {
		h.LeaseFloor = max(h.LeaseFloor, s.clock.At(lk.ExpiresAt())-int64(lease.Margin(lk.TTL())))
	}
	floor()

	// Writes and Release finish even when the run stops.
	bg := context.WithoutCancel(ctx)
	progressed := w.writes(bg, lk.Guard(), &h, floor)
	h.ReleaseCall = s.clock.Now()
	err = s.wd.Do(bg, "Release", opTimeout, lk.Release)
	h.ReleaseRet = s.clock.Now()
	h.Released = err == nil
	if err != nil {
		w.stats.add("release: " + classify(err))
	}
	return w.ended(h, acqCall, progressed)
}
