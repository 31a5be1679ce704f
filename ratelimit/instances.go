package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/leasekit/leasekit/internal/etcderr"
)

// instanceTTL is the TTL of the lease each FailLocal instance keeps its key
// on: a crashed instance is counted for up to this long.
const instanceTTL = 5 * time.Second

// register keeps this instance's key under base+"i/" and l.live equal to
// the number of such keys, until ctx ends. Failures are retried with a
// delay doubling from minBackoff to maxBackoff; l.live keeps the last
// count meanwhile, which is what FailLocal needs during an outage.
func (l *Limiter) register(ctx context.Context) {
	defer l.wg.Done()
	b := etcderr.Backoff{Min: minBackoff, Max: maxBackoff}
	for {
		counted, err := l.registerOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		if counted {
			b.Reset()
		}
		l.lg.Warn("ratelimit: instance registration failed; retrying", zap.Error(err), zap.Duration("backoff", b.Delay()))
		if b.Wait(ctx) != nil {
			return
		}
	}
}

// registerOnce puts this instance's key on a new lease, keeps the lease
// alive and counts the keys until the lease is lost, the watch fails or
// ctx ends. It revokes the lease on its way out, so that the others stop
// counting this instance at once when it closes.
func (l *Limiter) registerOnce(ctx context.Context) (counted bool, err error) {
	dir := l.base + "i/"
	cctx, cancel := l.callCtx(ctx)
	defer cancel()
	lease, err := l.cli.Grant(cctx, int64(instanceTTL/time.Second))
	if err != nil {
		return false, fmt.Errorf("grant: %w", err)
	}
	defer func() {
		rctx, cancel := etcderr.Cleanup(ctx)
		defer cancel()
		l.cli.Revoke(rctx, lease.ID)
	}()
	kctx, stop := context.WithCancel(ctx)
	defer stop()
	ka, err := l.cli.KeepAlive(kctx, lease.ID)
	if err != nil {
		return false, fmt.Errorf("keepalive: %w", err)
	}
	self := dir + strconv.FormatInt(int64(lease.ID), 16)
	if _, err := l.cli.Put(cctx, self, "", clientv3.WithLease(lease.ID)); err != nil {
		return false, fmt.Errorf("put %q: %w", self, err)
	}
	resp, err := l.cli.Get(cctx, dir, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return false, fmt.Errorf("count: %w", err)
	}
	live := make(map[string]struct{}, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		live[string(kv.Key)] = struct{}{}
	}
	l.setLive(len(live))

	// From the revision just read: served at once, not by etcd's catch-up
	// loop.
	wctx, cancelWatch := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancelWatch()
	wch := l.cli.Watch(wctx, dir, clientv3.WithPrefix(), clientv3.WithRev(resp.Header.Revision+1))
	for {
		select {
		case _, ok := <-ka:
			if !ok {
				return true, errors.New("instance lease lost")
			}
		case wr, ok := <-wch:
			if !ok {
				return true, errors.New("instance watch closed")
			}
			if err := wr.Err(); err != nil {
				return true, fmt.Errorf("instance watch: %w", err)
			}
			for _, ev := range wr.Events {
				if ev.Type == mvccpb.DELETE {
					delete(live, string(ev.Kv.Key))
				} else {
					live[string(ev.Kv.Key)] = struct{}{}
				}
			}
			l.setLive(len(live))
		case <-ctx.Done():
			return true, ctx.Err()
		}
	}
}

func (l *Limiter) setLive(n int) {
	if old := l.live.Swap(int64(n)); old != int64(n) {
		l.lg.Debug("ratelimit: live instances", zap.Int("count", n))
		l.om.LiveInstances(l.name, n)
	}
}
