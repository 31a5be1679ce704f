package election

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/leasekit/leasekit/internal/etcderr"
	"github.com/leasekit/leasekit/internal/keys"
	"github.com/leasekit/leasekit/internal/lease"
	"github.com/leasekit/leasekit/internal/queue"
)

// testHookResign, if set by a test, runs in Resign between reading the
// term and giving it up.
var testHookResign func()

// MaxNameLen is the longest election name, in bytes.
const MaxNameLen = keys.MaxNameLen

// Leader is what the leader of an election announced, and its term. The
// zero Leader (Rev == 0) stands for "no leader" where a channel or
// callback needs a value for it.
type Leader struct {
	// Value is what the leader campaigned or last proclaimed with.
	Value string
	// Rev is the term: the create revision of the leader's key. It
	// strictly increases from one leader to the next and stays the same
	// across Proclaim, so it works as a fencing token.
	Rev int64
}

// Election is one candidate in the election of one name. Candidates line
// up in the order they campaigned (FIFO); the first leads until it
// resigns or loses its lease, then the next leads at once. Each waiting
// candidate watches only the nearest keys ahead of it, from the current
// revision, so a handover costs one delete and one watch event, and wakes
// one candidate, not all of them.
//
// Most callers want Run, which campaigns, runs the leader's duties with a
// context cancelled the moment leadership is lost, hands over when the
// duties end, and campaigns again. Campaign, Resign and Proclaim are the
// parts it is built from.
//
// An Election is safe for concurrent use, but it is one candidate: only
// one Campaign or Run may be in progress at a time. Make one Election per
// candidate; Observe and Leader work from any Election of the name,
// candidate or not.
//
// Leading only excludes other leaders from writes that check it: a
// process can pause (GC, a slow disk, a partition) past its lease and
// still believe it leads. Make writes to etcd conditional with Txn or
// Guard, and pass Rev to other systems as a fencing token they check.
type Election struct {
	cli     *clientv3.Client
	name    string
	queue   string // prefix + escape(name) + "/"
	line    *queue.Queue
	ttl     time.Duration
	value   string
	lg      *zap.Logger
	metrics Metrics
	seq     atomic.Int64

	mu      sync.Mutex
	busy    bool  // a Campaign or Run is in progress
	term    *term // the won term, until resigned; it may have been lost
	lastTTL time.Duration
}

// term is one won campaign: the candidate's key and the lease it is on.
// The entry ends (Done) when the key is deleted, the lease is lost, or
// the term is given up.
type term struct {
	entry *queue.Entry
	lease *lease.Lease
	won   time.Time

	// gone is set when the background check after a waited win found the
	// key already deleted; the entry is then closed, which ends the term.
	gone        atomic.Bool
	stopConfirm context.CancelFunc
	confirmDone chan struct{}

	// run is set (under Election.mu) while Run owns the term: Resign
	// then asks Run to step down, so that duties end before the key goes,
	// instead of deleting the key itself.
	run bool
	// resigning is set (under Election.mu) once Resign is giving up a term
	// that Run does not own, so that a Run or Campaign starting meanwhile
	// campaigns anew instead of taking over a key about to go.
	resigning  bool
	stepDown   chan struct{}
	stepOnce   sync.Once
	releaseMu  sync.Mutex
	released   chan struct{} // closed once the key and lease are given up
	releaseErr error
}

func newTerm(ent *queue.Entry, ls *lease.Lease, run bool) *term {
	t := &term{
		entry: ent, lease: ls, won: time.Now(), run: run,
		stopConfirm: func() {}, confirmDone: make(chan struct{}),
		stepDown: make(chan struct{}), released: make(chan struct{}),
	}
	close(t.confirmDone)
	return t
}

// confirmAfter starts the check that a win which ended a wait was not
// won with a key that is already gone. The wait ends on the delete event
// of the key ahead; the entry's watch of its own key can report a delete
// of that key at the same revision (etcd --prefix deletes) a little
// later, or, if the watch is still catching up, up to etcd's 100ms loop
// later. One read closes that gap without putting a read between the
// event and the win: a read right after a delete waits for etcd's
// backend commit, an fsync.
func (t *term) confirmAfter(e *Election) {
	ctx, cancel := context.WithCancel(context.Background())
	t.stopConfirm, t.confirmDone = cancel, make(chan struct{})
	go func() {
		defer close(t.confirmDone)
		err := e.confirm(ctx, t.entry)
		if err != nil && ctx.Err() == nil {
			t.gone.Store(true)
			e.lg.Warn("won with a key that was already gone; the term ends", zap.Int64("term", t.entry.Rev()), zap.Error(err))
			t.entry.Close()
		}
	}()
}

func (t *term) done() <-chan struct{} { return t.entry.Done() }

func (t *term) alive() bool {
	select {
	case <-t.done():
		return false
	default:
		return true
	}
}

// New returns a candidate for the election name, which uses cli. It makes
// no call to etcd. The Election does not own cli: close cli after the
// last call on the Election.
//
// Names never collide: "a", "a/" and "a/b" are three elections.
func New(cli *clientv3.Client, name string, opts ...Option) (*Election, error) {
	o := defaultOptions()
	for _, opt := range opts {
		if opt == nil {
			return nil, fmt.Errorf("%w: nil Option", ErrInvalidOption)
		}
		opt.apply(&o)
	}
	if cli == nil {
		return nil, fmt.Errorf("%w: nil etcd client", ErrInvalidOption)
	}
	enc, err := keys.Encode(name)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidName, err)
	}
	prefix, err := keys.Prefix(o.prefix)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidOption, err)
	}
	switch {
	case o.ttl <= 0:
		return nil, fmt.Errorf("%w: %v must be positive", ErrInvalidTTL, o.ttl)
	case o.ttl > MaxTTL:
		return nil, fmt.Errorf("%w: %v is above etcd's maximum %v", ErrInvalidTTL, o.ttl, MaxTTL)
	case o.logger == nil:
		return nil, fmt.Errorf("%w: nil logger", ErrInvalidOption)
	case o.metrics == nil:
		return nil, fmt.Errorf("%w: nil metrics", ErrInvalidOption)
	}
	if err := checkValue(o.value); err != nil {
		return nil, err
	}
	q := prefix + enc + "/"
	return &Election{
		cli: cli, name: name, queue: q, line: queue.New(cli, q, queue.Rule{N: 1}), ttl: o.ttl, value: o.value,
		lg: o.logger.With(zap.String("election", name)), metrics: o.metrics,
		lastTTL: time.Duration(lease.Seconds(o.ttl)) * time.Second,
	}, nil
}

func checkValue(v string) error {
	if len(v) > MaxValueLen {
		return fmt.Errorf("%w: %d bytes; the limit is %d", ErrInvalidValue, len(v), MaxValueLen)
	}
	return nil
}

// Name returns the election's name.
func (e *Election) Name() string { return e.name }

// Campaign puts this candidate in line with value and blocks until it
// leads, ctx ends, or its candidacy is lost. Candidates are served in the
// order they campaigned.
//
// If ctx ends first, Campaign leaves the line and returns an error
// wrapping ctx's error. If the candidate's lease expires or its key is
// deleted while it waits, Campaign returns an error wrapping ErrLost, also
// when the key is deleted in the very revision of the handover (etcdctl
// del --prefix on the election): it never reports a win for a key that
// is gone. Guarded writes (Txn, Guard) never succeed for a deleted key.
// If this candidate already leads, Campaign keeps the term and proclaims
// value.
//
// A won term lasts until Resign or loss; Done reports a loss. Call Resign
// when done, or the term lasts (and the lease is renewed) for as long as
// the process runs.
func (e *Election) Campaign(ctx context.Context, value string) error {
	if err := checkValue(value); err != nil {
		return err
	}
	t, err := e.begin(false)
	if err != nil {
		return err
	}
	defer e.finish()
	if t != nil {
		return e.Proclaim(ctx, value)
	}
	_, err = e.win(ctx, value, false)
	return err
}

// begin claims the campaign slot. It returns the current term if it is
// alive and not being resigned (Run takes it over), and otherwise gives
// that term up (or waits for Resign to).
func (e *Election) begin(run bool) (*term, error) {
	e.mu.Lock()
	if e.busy {
		e.mu.Unlock()
		return nil, fmt.Errorf("%w: election %q", ErrBusy, e.name)
	}
	e.busy = true
	t := e.term
	if t != nil && t.alive() && !t.resigning {
		t.run = t.run || run
		e.mu.Unlock()
		return t, nil
	}
	e.mu.Unlock()
	if t != nil {
		ctx, cancel := etcderr.Cleanup(context.Background())
		defer cancel()
		e.release(ctx, t)
	}
	return nil, nil
}

func (e *Election) finish() {
	e.mu.Lock()
	e.busy = false
	e.mu.Unlock()
}

// win campaigns and records the won term.
func (e *Election) win(ctx context.Context, value string, run bool) (*term, error) {
	if err := ctx.Err(); err != nil {
		e.metrics.Failed(e.name, etcderr.Reason(err, ErrLost))
		return nil, fmt.Errorf("election: campaign %q: %w", e.name, err)
	}
	start := time.Now()
	t, err := e.campaign(ctx, value, run)
	if err != nil {
		e.metrics.Failed(e.name, etcderr.Reason(err, ErrLost))
		return nil, fmt.Errorf("election: campaign %q: %w", e.name, err)
	}
	e.mu.Lock()
	e.term = t
	e.lastTTL = t.lease.TTL()
	e.mu.Unlock()
	e.metrics.Elected(e.name, time.Since(start))
	e.lg.Debug("elected", zap.Int64("term", t.entry.Rev()), zap.Duration("campaigned", time.Since(start)))
	return t, nil
}

// campaign joins the line on a lease of its own and waits for its turn.
func (e *Election) campaign(ctx context.Context, value string, run bool) (*term, error) {
	ls, err := lease.Grant(ctx, e.cli, e.ttl, true, e.lg)
	if err != nil {
		return nil, err
	}
	// The campaign ends when the lease is lost, even in a read blocked on
	// an unreachable etcd.
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(ls.Context(), cancel)()
	// Keys are unique per attempt, so that a write whose outcome is
	// unknown can never be mistaken for a later one.
	key := fmt.Sprintf("%s%016x-%x", e.queue, int64(ls.ID()), e.seq.Add(1))
	waited := false
	ent, err := e.line.Join(cctx, key, value, ls)
	if err == nil && !ent.Admitted() {
		waited = true
		err = e.wait(cctx, ent)
	}
	if err == nil {
		// Wait reports the entry's end, but Join's fast path does not.
		err = ent.Err()
	}
	if err == nil && !ls.Alive() {
		err = queue.ErrGone
	}
	if err != nil {
		switch {
		case ctx.Err() != nil:
			err = ctx.Err()
		case !ls.Alive(), errors.Is(err, queue.ErrGone):
			err = lossCause(ls)
		}
		if ent != nil {
			ent.Close()
		}
		// Revoking deletes the key if Join wrote it.
		ls.RevokeDetached()
		return nil, err
	}
	t := newTerm(ent, ls, run)
	if waited {
		t.confirmAfter(e)
	}
	return t, nil
}

// wait waits for ent's turn. A wait that fails for a reason other than
// ctx or the entry's end, such as a watch refused while etcd elects a
// leader, is retried: the key keeps its place in line meanwhile.
func (e *Election) wait(ctx context.Context, ent *queue.Entry) error {
	b := etcderr.Backoff{Min: retryFirst, Max: retryLast}
	for {
		err := ent.Wait(ctx)
		if err == nil || ctx.Err() != nil || ent.Err() != nil || errors.Is(err, queue.ErrGone) {
			return err
		}
		e.lg.Debug("campaign: wait failed; retrying", zap.Duration("in", b.Delay()), zap.Error(err))
		if err := b.Wait(ctx); err != nil {
			return err
		}
	}
}

// confirm checks that ent's key exists with nothing ahead of it, and
// retries until it knows or ctx ends. The queue's read reflects at least
// the delete event that ended the wait; a member that lags behind it is
// asked again linearizably.
func (e *Election) confirm(ctx context.Context, ent *queue.Entry) error {
	b := etcderr.Backoff{Min: retryFirst, Max: retryLast}
	for {
		admitted, err := ent.Recheck(ctx)
		switch {
		case err == nil && admitted:
			return nil
		case err == nil:
			return fmt.Errorf("election: campaign %q: a key is still ahead after the wait", e.name)
		case errors.Is(err, queue.ErrGone), ctx.Err() != nil:
			return err
		}
		e.lg.Debug("campaign: confirming the win failed; retrying", zap.Duration("in", b.Delay()), zap.Error(err))
		if err := b.Wait(ctx); err != nil {
			return err
		}
	}
}

// lossCause says whether a loss came from the lease or from the key.
func lossCause(ls *lease.Lease) error {
	if err := ls.Err(); err != nil && !errors.Is(err, lease.ErrRevoked) {
		return fmt.Errorf("%w: lease: %w", ErrLost, err)
	}
	return fmt.Errorf("%w: key deleted", ErrLost)
}

// Resign gives up leadership: the next candidate leads at once, without
// waiting for a TTL. It returns nil if this candidate does not lead. If
// ctx ends before etcd confirms, nothing renews the lease any more, so the
// term ends by expiry at the latest.
//
// While Run owns the term, Resign asks Run to stop the duties first and
// waits for the handover; Run then campaigns again. A Run or Campaign
// that starts while Resign gives up a term never takes that term over:
// it campaigns anew.
func (e *Election) Resign(ctx context.Context) error {
	e.mu.Lock()
	t := e.term
	run := t != nil && t.run
	if t != nil && !run {
		// From here on, no Run or Campaign takes this term over.
		t.resigning = true
	}
	e.mu.Unlock()
	if testHookResign != nil {
		testHookResign()
	}
	if t == nil {
		return nil
	}
	if run {
		t.stepOnce.Do(func() { close(t.stepDown) })
		select {
		case <-t.released:
			return t.releaseErr
		case <-ctx.Done():
			return fmt.Errorf("election: resign %q: %w", e.name, ctx.Err())
		}
	}
	return e.release(ctx, t)
}

// release deletes the term's key by revoking its lease, once.
func (e *Election) release(ctx context.Context, t *term) error {
	t.releaseMu.Lock()
	defer t.releaseMu.Unlock()
	select {
	case <-t.released:
		return t.releaseErr
	default:
	}
	t.stopConfirm()
	<-t.confirmDone
	lost := !t.alive()
	leaseLost := t.lease.Err() != nil
	t.entry.Close()
	// The key goes with the lease. Nothing is left to report if etcd no
	// longer has the lease, or if the lease was lost already: the loss
	// was reported, and nothing renews the lease any more.
	err := t.lease.Revoke(ctx)
	if errors.Is(err, lease.ErrNotFound) || leaseLost {
		err = nil
	}
	if err != nil {
		err = fmt.Errorf("election: resign %q: %w", e.name, err)
		e.lg.Warn("resign failed; the term ends when its lease expires", zap.Error(err))
	}
	e.mu.Lock()
	if e.term == t {
		e.term = nil
	}
	e.mu.Unlock()
	led := time.Since(t.won)
	e.metrics.SteppedDown(e.name, led, lost)
	if !lost {
		e.lg.Debug("resigned", zap.Int64("term", t.entry.Rev()), zap.Duration("led", led))
	}
	t.releaseErr = err
	close(t.released)
	return err
}

// Proclaim changes the value the leader announces, keeping the term. It
// returns an error wrapping ErrNotLeader if this candidate does not lead,
// checked by etcd in the same transaction.
func (e *Election) Proclaim(ctx context.Context, value string) error {
	if err := checkValue(value); err != nil {
		return err
	}
	t := e.current()
	if t == nil || !t.alive() {
		return fmt.Errorf("election: proclaim %q: %w", e.name, ErrNotLeader)
	}
	key := t.entry.Key()
	resp, err := e.cli.Txn(ctx).If(t.entry.Guard()).
		Then(clientv3.OpPut(key, value, clientv3.WithIgnoreLease())).Commit()
	if err != nil {
		return fmt.Errorf("election: proclaim %q: %w", e.name, err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("election: proclaim %q: %w: key gone", e.name, ErrNotLeader)
	}
	return nil
}

// Leader asks etcd who leads, with a linearizable read. It returns
// ErrNoLeader when nobody does.
func (e *Election) Leader(ctx context.Context) (Leader, error) {
	resp, err := e.cli.Get(ctx, e.queue, clientv3.WithFirstCreate()...)
	if err != nil {
		return Leader{}, fmt.Errorf("election: leader of %q: %w", e.name, err)
	}
	if len(resp.Kvs) == 0 {
		return Leader{}, ErrNoLeader
	}
	kv := resp.Kvs[0]
	return Leader{Value: string(kv.Value), Rev: kv.CreateRevision}, nil
}

func (e *Election) current() *term {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.term
}

// IsLeader reports whether this candidate holds a term that has not been
// lost, as far as this process knows, without a call to etcd. Writes that
// must not happen after a loss belong in Txn instead.
func (e *Election) IsLeader() bool {
	t := e.current()
	return t != nil && t.alive()
}

// Rev returns the term of this candidate's current win (the create
// revision of its key), or 0 if it holds none. After a loss it still
// returns the lost term until Resign or the next Campaign.
func (e *Election) Rev() int64 {
	if t := e.current(); t != nil {
		return t.entry.Rev()
	}
	return 0
}

// Token is shorthand for Rev: the fencing token, under the name
// etcdlock.Lock gives it, so that code fencing its writes with
// interface{ Token() int64; Guard() clientv3.Cmp } takes a lock or an
// election alike. Leader.Rev and Rev keep etcd's word for a term.
func (e *Election) Token() int64 { return e.Rev() }

// Key is shorthand for Name: the election's name, as Key is a lock's name
// on etcdlock.Lock. EtcdKey returns the key in etcd.
func (e *Election) Key() string { return e.name }

// EtcdKey returns the etcd key of this candidate's current win, or "",
// for etcdctl and for tests that delete it to simulate a loss.
func (e *Election) EtcdKey() string {
	if t := e.current(); t != nil {
		return t.entry.Key()
	}
	return ""
}

// closed is returned by Done when there is no term.
var closed = func() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}()

// Done returns a channel that is closed when the current term ends: by
// Resign, or by a loss, which is noticed before etcd can expire the lease
// (so before any other candidate can lead), or when the key is deleted.
// Without a term it returns a closed channel.
func (e *Election) Done() <-chan struct{} {
	if t := e.current(); t != nil {
		return t.done()
	}
	return closed
}

// Err returns nil while this candidate leads, an error wrapping ErrLost
// after a loss, and ErrNotLeader without a term.
func (e *Election) Err() error {
	t := e.current()
	if t == nil {
		return ErrNotLeader
	}
	return t.err()
}

// err is Err for term t.
func (t *term) err() error {
	if t.alive() {
		return nil
	}
	if t.gone.Load() {
		return fmt.Errorf("%w: key deleted", ErrLost)
	}
	if t.lease.Alive() && errors.Is(t.entry.Err(), queue.ErrLeft) {
		return ErrNotLeader
	}
	return lossCause(t.lease)
}

// TTL returns the lease TTL etcd granted for the newest term, or, before
// the first win, the configured TTL rounded up to whole seconds. etcd
// may grant more than asked.
func (e *Election) TTL() time.Duration {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.lastTTL
}

// ExpiresAt returns the earliest time etcd could expire the current
// term's lease, so the earliest time another candidate could lead if this
// one stopped renewing; renewals move it on. Done is closed a margin
// before it. Without a term it returns the zero time.
func (e *Election) ExpiresAt() time.Time {
	if t := e.current(); t != nil {
		return t.lease.ExpiresAt()
	}
	return time.Time{}
}

// never returns a comparison etcd never finds true: no key has a
// negative create revision.
func never(key string) clientv3.Cmp {
	return clientv3.Compare(clientv3.CreateRevision(key), "<", 0)
}

// Guard returns a comparison that etcd finds true only while this
// candidate's current term lasts, for conditional writes:
//
//	cli.Txn(ctx).If(e.Guard(), ...).Then(...)
//
// Without a term it returns a comparison that is always false.
func (e *Election) Guard() clientv3.Cmp {
	if t := e.current(); t != nil {
		return t.entry.Guard()
	}
	return never(e.queue)
}

// Txn commits ops only while this candidate leads, checked by etcd in the
// same transaction. It returns an error wrapping ErrNotLeader, and
// commits nothing, once leadership is lost. For more comparisons, build
// the transaction with Guard.
func (e *Election) Txn(ctx context.Context, ops ...clientv3.Op) (*clientv3.TxnResponse, error) {
	t := e.current()
	if t == nil || !t.alive() {
		return nil, fmt.Errorf("election: txn %q: %w", e.name, ErrNotLeader)
	}
	resp, err := e.cli.Txn(ctx).If(t.entry.Guard()).Then(ops...).Commit()
	if err != nil {
		return nil, fmt.Errorf("election: txn %q: %w", e.name, err)
	}
	if !resp.Succeeded {
		return resp, fmt.Errorf("election: txn %q: %w: key gone", e.name, ErrNotLeader)
	}
	return resp, nil
}
