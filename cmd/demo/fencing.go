package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/leasekit/leasekit/etcdlock"
)

// fencedStore stands for a system outside etcd, such as a database or a
// file server, that protects itself with fencing tokens: it refuses a
// write whose token is lower than one it has already seen.
type fencedStore struct {
	mu      sync.Mutex
	highest int64
	value   string
}

var errStaleToken = errors.New("stale fencing token")

func (s *fencedStore) write(token int64, v string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if token < s.highest {
		return fmt.Errorf("%w: %d < %d", errStaleToken, token, s.highest)
	}
	s.highest, s.value = token, v
	return nil
}

// runFencing cuts a lock holder off from etcd. The holder must be told it
// lost the lock before the next holder gets it, and its late writes must
// be refused, both by etcd (a guarded transaction) and by a system that
// checks fencing tokens.
func runFencing(ctx context.Context, e *env) error {
	sc := e.scope()
	defer sc.close()
	const name = "ledger"
	queue := e.lockPrefix() + name + "/"
	dataKey := e.dataKey("ledger")
	e.out.say(`Instance A holds the lock %q; instance B waits for it. A reaches etcd
through a TCP proxy that this demo can cut, as a network partition would:
A's connection stays open but silent. A's lease then runs out. A must be
told before etcd can give the lock to B, and whatever A writes late must
be refused.`, name)
	if e.cluster == nil {
		e.out.say("(Against --endpoints the proxy runs in this process, in front of %s.)", e.endpoints[0])
	}

	cliA, proxy, err := sc.cuttableClient(0)
	if err != nil {
		return err
	}
	cliB, err := sc.client()
	if err != nil {
		return err
	}
	lockerA, err := sc.locker(cliA)
	if err != nil {
		return err
	}
	lockerB, err := sc.locker(cliB)
	if err != nil {
		return err
	}

	lkA, err := lockerA.LockWithOptions(ctx, etcdlock.LockOptions{Key: name, TTL: e.size.faultTTL, AutoRefresh: true})
	if err != nil {
		return err
	}
	e.out.event("A holds %q: token %d, lease TTL %v as granted by etcd (asked %v), kept alive every third of it",
		name, lkA.Token(), lkA.TTL(), e.size.faultTTL)
	store := &fencedStore{}
	write := func(cli *clientv3.Client, lk etcdlock.Lock, who string) (etcdOK bool, storeErr error, err error) {
		v := fmt.Sprintf("written by %s, token %d", who, lk.Token())
		resp, err := cli.Txn(ctx).If(lk.Guard()).Then(clientv3.OpPut(dataKey, v)).Commit()
		if err != nil {
			return false, nil, err
		}
		return resp.Succeeded, store.write(lk.Token(), v), nil
	}
	ok, serr, err := write(cliA, lkA, "A")
	if err != nil {
		return err
	}
	e.out.event("A writes: etcd guarded Txn succeeded=%v; token-checking store: %v", ok, errText(serr))

	type acquired struct {
		lk  etcdlock.Lock
		at  time.Time
		err error
	}
	gotB := make(chan acquired, 1)
	go func() {
		lk, err := lockerB.Lock(ctx, name, 10*time.Second)
		gotB <- acquired{lk, time.Now(), err}
	}()
	if err := waitKeys(ctx, e.admin, queue, 2); err != nil {
		return err
	}
	e.out.event("B is in line behind A")

	cutAt := time.Now()
	proxy.Cut()
	e.out.event("the network between A and etcd is cut")
	stop := e.out.progress("waiting for A's lease to run out", nil)
	var toldAt time.Time
	var b acquired
	done := lkA.Done()
	for toldAt.IsZero() || b.at.IsZero() {
		select {
		case <-done:
			toldAt, done = time.Now(), nil
		case b = <-gotB:
			gotB = nil
			if b.err != nil {
				stop()
				return fmt.Errorf("holder B: %w", b.err)
			}
		case <-ctx.Done():
			stop()
			return ctx.Err()
		}
	}
	stop()
	lkB := b.lk
	e.out.eventAt(toldAt, "A is told: Done closed, Err = %v", lkA.Err())
	e.out.eventAt(b.at, "B holds %q: token %d", name, lkB.Token())
	if !toldAt.Before(b.at) {
		return fmt.Errorf("holder A was told %v after B acquired", b.at.Sub(toldAt))
	}
	e.out.say(`A learned of the loss %s after the cut and %s before B got the lock. A
counts its lease as lost at (send time of its last keepalive + TTL - margin);
etcd cannot expire it before (arrival of that keepalive + TTL).`, ms(toldAt.Sub(cutAt)), ms(b.at.Sub(toldAt)))

	ok, serr, err = write(cliB, lkB, "B")
	if err != nil {
		return err
	}
	e.out.event("B writes: etcd guarded Txn succeeded=%v; token-checking store: %v", ok, errText(serr))
	if !ok || serr != nil {
		return errors.New("the new holder's write was refused")
	}

	proxy.Heal()
	healAt := time.Now()
	e.out.event("the network heals; A, which did not check Done, sends the write it had in hand")
	// The heal closed A's broken connection, so the first try can fail
	// with Unavailable; A retries until its client has reconnected.
	var okA bool
	var serrA error
	for retry := time.Now().Add(5 * time.Second); ; {
		okA, serrA, err = write(cliA, lkA, "A")
		if err == nil || ctx.Err() != nil || time.Now().After(retry) {
			break
		}
		work(ctx, 20*time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("holder A's late write: %w", err)
	}
	e.out.event("A's late write (%s after the heal): etcd guarded Txn succeeded=%v; token-checking store: %v",
		ms(time.Since(healAt)), okA, errText(serrA))
	if okA || serrA == nil {
		return errors.New("the old holder's late write was accepted")
	}
	resp, err := e.admin.Get(ctx, dataKey)
	if err != nil {
		return err
	}
	e.out.event("the data in etcd: %q; in the store: %q", resp.Kvs[0].Value, store.value)
	e.out.event("A's Release: %v", lkA.Release(ctx))
	if err := lkB.Release(ctx); err != nil {
		return err
	}
	e.sum.add("fencing", "cut-off holder told before next holder",
		fmt.Sprintf("yes: told %s after the cut, %s before B (TTL %v)", ms(toldAt.Sub(cutAt)), ms(b.at.Sub(toldAt)), lkA.TTL()))
	e.sum.add("fencing", "old holder's late write", "refused by etcd (Guard) and by the token check")
	return nil
}

// errText is err's text, or "ok" for nil.
func errText(err error) string {
	if err == nil {
		return "ok"
	}
	return "refused (" + err.Error() + ")"
}
