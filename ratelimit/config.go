package ratelimit

import (
	"context"
	"errors"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/leasekit/leasekit/internal/etcderr"
)

type mvccKV = mvccpb.KeyValue

const (
	// sweepInterval is how often the limiter expires held tokens of idle
	// keys and forgets keys it has not used for idleForget.
	sweepInterval = time.Second
	idleForget    = 10 * time.Second
	// Backoff between attempts to read and watch the stored limit.
	minBackoff = 50 * time.Millisecond
	maxBackoff = 2 * time.Second
)

// run is the limiter's one goroutine: it keeps the limit in force equal to
// the one stored in etcd and sweeps idle keys, until Close. It retries a
// failed read or watch with a delay doubling from minBackoff to
// maxBackoff. A definite refusal of the first read (etcderr.Refused) is
// also handed to waitReady, so that calls fail at once with it instead of
// waiting for a retry that cannot help; retries go on, in case the rights
// are granted later.
func (l *Limiter) run(ctx context.Context) {
	defer close(l.done)
	tick := time.NewTicker(sweepInterval)
	defer tick.Stop()
	b := etcderr.Backoff{Min: minBackoff, Max: maxBackoff}
	for {
		watched, err := l.watchLimit(ctx, tick.C)
		if ctx.Err() != nil {
			return
		}
		if watched {
			b.Reset()
		} else if etcderr.Refused(err) {
			l.setRefusal(err)
		}
		l.lg.Warn("ratelimit: limit watch failed; retrying", zap.Error(err), zap.Duration("backoff", b.Delay()))
		if b.Wait(ctx) != nil {
			return
		}
	}
}

// watchLimit reads the stored limit, then applies every change to it until
// the watch fails. watched reports whether the read succeeded.
func (l *Limiter) watchLimit(ctx context.Context, tick <-chan time.Time) (watched bool, err error) {
	cctx, cancel := l.callCtx(ctx)
	resp, err := l.cli.Get(cctx, l.cfgKey)
	cancel()
	if err != nil {
		return false, err
	}
	if len(resp.Kvs) == 0 {
		// Absent: New's limit, as of this revision (the key may have been
		// deleted while no watch was open).
		l.applyStored(nil, resp.Header.Revision)
	} else {
		l.applyStored(resp.Kvs[0], resp.Kvs[0].ModRevision)
	}
	l.readyOnce.Do(func() { close(l.ready) })
	l.setRefusal(nil)

	// Watch from the revision just read: a watch that starts at the
	// current revision is served at once, not by etcd's 100ms catch-up
	// loop. WithRequireLeader ends it if its member loses the cluster.
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	wch := l.cli.Watch(wctx, l.cfgKey, clientv3.WithRev(resp.Header.Revision+1))
	for {
		select {
		case wr, ok := <-wch:
			if !ok {
				return true, errors.New("watch closed")
			}
			if err := wr.Err(); err != nil {
				return true, err
			}
			for _, ev := range wr.Events {
				if ev.Type == mvccpb.DELETE {
					l.applyStored(nil, ev.Kv.ModRevision)
				} else {
					l.applyStored(ev.Kv, ev.Kv.ModRevision)
				}
			}
		case <-tick:
			l.sweep()
		case <-ctx.Done():
			return true, ctx.Err()
		}
	}
}

// applyStored puts the stored limit kv in force, or New's limit if kv is
// nil. An invalid stored limit is logged and ignored.
func (l *Limiter) applyStored(kv *mvccKV, rev int64) {
	p := l.def
	if kv != nil {
		lim, err := unmarshalLimit(kv.Value)
		if err == nil {
			p, err = newParams(lim)
		}
		if err != nil {
			l.lg.Error("ratelimit: ignoring invalid stored limit", zap.ByteString("value", kv.Value), zap.Error(err))
			return
		}
	}
	l.applyLimit(p, rev)
}

// applyLimit puts p in force unless a later revision already is.
func (l *Limiter) applyLimit(p *params, rev int64) {
	l.limitMu.Lock()
	defer l.limitMu.Unlock()
	if rev <= l.limitRev {
		return
	}
	l.limitRev = rev
	old := l.cur.Swap(p)
	if old.limit == p.limit {
		return
	}
	l.lg.Info("ratelimit: limit changed", zap.Stringer("from", old.limit), zap.Stringer("to", p.limit), zap.Int64("revision", rev))
	if l.cfg.onLimit != nil {
		l.cfg.onLimit(p.limit)
	}
}

// sweep expires the held tokens of keys nobody is calling and forgets keys
// idle for idleForget. A forgotten key costs one extra round trip on its
// next use, to learn its state again.
func (l *Limiter) sweep() {
	now := l.clock.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	for k, ks := range l.keys {
		if ks.refs > 0 {
			continue
		}
		if ks.held > 0 && now >= ks.heldUntil {
			l.m.Held(l.name, -ks.held)
			ks.held = 0
		}
		if ks.held == 0 && now-ks.lastUse > int64(idleForget) {
			delete(l.keys, k)
		}
	}
}
