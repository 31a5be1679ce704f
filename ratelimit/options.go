package ratelimit

import (
	"fmt"
	"time"

	"go.uber.org/zap"
)

// DefaultPrefix is where limiters keep their state unless WithPrefix says
// otherwise.
const DefaultPrefix = "/leasekit/ratelimit/"

// DefaultBatchWindow is the batch window of a Limiter without
// WithBatchWindow: short enough that batching overshoots a limit by at
// most 2.5% of one second's worth of events, long enough that four busy
// instances sharing 5,000/s write about once per 40 permits.
const DefaultBatchWindow = 25 * time.Millisecond

// An Option configures a Limiter.
type Option interface{ apply(*config) }

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

// DefaultCallTimeout bounds each etcd call a Limiter makes on behalf of a
// caller unless WithCallTimeout says otherwise. A write to etcd takes about
// a millisecond, and an etcd leader election a second or two: a call that
// has not returned by then finds etcd unreachable, and the outage policy
// decides.
const DefaultCallTimeout = time.Second

type config struct {
	prefix  string
	window  time.Duration
	clock   func() time.Time
	logger  *zap.Logger
	metrics Metrics
	onLimit func(Limit)
	outage  OutagePolicy
	timeout time.Duration
}

func defaultConfig() config {
	return config{
		prefix:  DefaultPrefix,
		window:  DefaultBatchWindow,
		logger:  zap.NewNop(),
		metrics: nopMetrics{},
		outage:  FailClosed,
		timeout: DefaultCallTimeout,
	}
}

func (c *config) validate() error {
	if c.prefix == "" {
		return fmt.Errorf("%w: empty prefix", ErrInvalidOption)
	}
	if c.window < 0 {
		return fmt.Errorf("%w: batch window %v; want >= 0", ErrInvalidOption, c.window)
	}
	if c.outage < FailClosed || c.outage > FailLocal {
		return fmt.Errorf("%w: outage policy %d", ErrInvalidOption, int(c.outage))
	}
	if c.timeout <= 0 {
		return fmt.Errorf("%w: call timeout %v; want > 0", ErrInvalidOption, c.timeout)
	}
	if c.logger == nil {
		return fmt.Errorf("%w: nil logger", ErrInvalidOption)
	}
	if c.metrics == nil {
		return fmt.Errorf("%w: nil metrics", ErrInvalidOption)
	}
	return nil
}

// WithPrefix keeps the limiter's keys under prefix instead of
// DefaultPrefix. A '/' is appended if prefix lacks one. Instances share a
// limit only if they use the same prefix and name.
func WithPrefix(prefix string) Option {
	return optionFunc(func(c *config) { c.prefix = prefix })
}

// WithBatchWindow sets how long an instance may hold tokens it took from
// the shared bucket in a batch (default DefaultBatchWindow). Tokens not
// used within the window expire.
//
// A longer window means fewer etcd writes and a looser limit: batching can
// allow at most Rate × window / Period events more than the exact limit in
// any interval. WithBatchWindow(0) turns batching off, so that every
// allowed call is one compare-and-swap and the limit is exact.
func WithBatchWindow(d time.Duration) Option {
	return optionFunc(func(c *config) { c.window = d })
}

// WithClock makes the limiter read time from now instead of the system
// clock. It is meant for tests and simulations, where a clock that only
// moves when told makes results exact. Wait still sleeps in real time.
func WithClock(now func() time.Time) Option {
	return optionFunc(func(c *config) { c.clock = now })
}

// WithLogger sends the limiter's logs to lg. The default discards them.
func WithLogger(lg *zap.Logger) Option {
	return optionFunc(func(c *config) { c.logger = lg })
}

// WithMetrics reports the limiter's events to m. The default discards them.
func WithMetrics(m Metrics) Option {
	return optionFunc(func(c *config) { c.metrics = m })
}

// WithLimitHook calls f with the limit in force each time it changes
// through etcd (see SetLimit), including when the limiter first loads a
// stored limit. f runs on the limiter's watch goroutine, or in SetLimit
// for this limiter's own changes, one call at a time; it must not block or
// call SetLimit.
func WithLimitHook(f func(Limit)) Option {
	return optionFunc(func(c *config) { c.onLimit = f })
}

// WithOutagePolicy says what Allow, Wait and Reserve do when they need etcd
// and cannot reach it, or etcd refuses them (default FailClosed). See
// OutagePolicy. Every instance of a name should use the same policy.
func WithOutagePolicy(p OutagePolicy) Option {
	return optionFunc(func(c *config) { c.outage = p })
}

// WithCallTimeout bounds each etcd call that Allow, Wait and Reserve make
// (default DefaultCallTimeout), on top of the caller's ctx. A call that
// times out while the caller's ctx is still alive counts as an outage, and
// the outage policy decides; later calls do not wait for etcd again until
// a background probe reaches it.
func WithCallTimeout(d time.Duration) Option {
	return optionFunc(func(c *config) { c.timeout = d })
}
