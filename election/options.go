package election

import (
	"fmt"
	"os"
	"time"

	"go.uber.org/zap"
)

// DefaultPrefix is where an Election keeps its keys unless WithPrefix says
// otherwise. The candidates for the election named N queue under
// DefaultPrefix + escape(N) + "/".
const DefaultPrefix = "/leasekit/election/"

// DefaultTTL is the lease TTL unless WithTTL says otherwise: how long a
// leader that stops renewing (crashed, cut off) keeps leadership.
const DefaultTTL = 10 * time.Second

// MaxTTL is the longest TTL etcd grants.
const MaxTTL = 9_000_000_000 * time.Second

// MaxValueLen is the longest candidate value, in bytes: well below etcd's
// default request limit of 1.5 MiB.
const MaxValueLen = 1 << 20

// An Option configures an Election.
type Option interface{ apply(*options) }

type optionFunc func(*options)

func (f optionFunc) apply(o *options) { f(o) }

type options struct {
	prefix  string
	ttl     time.Duration
	value   string
	logger  *zap.Logger
	metrics Metrics
}

func defaultOptions() options {
	host, err := os.Hostname()
	if err != nil {
		host = "unknown"
	}
	return options{
		prefix:  DefaultPrefix,
		ttl:     DefaultTTL,
		value:   fmt.Sprintf("%s/%d", host, os.Getpid()),
		logger:  zap.NewNop(),
		metrics: nopMetrics{},
	}
}

// WithTTL sets the lease TTL of each candidacy (default DefaultTTL). It is
// the failure detection time: a leader that crashes or is cut off from
// etcd keeps leadership for up to this long, though it stops its own
// duties a little earlier (see Run). The lease is renewed every third of
// the TTL.
//
// etcd counts whole seconds, so the TTL is rounded up, and etcd raises
// TTLs below its minimum (ceil(1.5 × election timeout): 2s by default)
// without saying so. TTL reports what etcd granted, and a raise is logged
// at warn level.
func WithTTL(d time.Duration) Option {
	return optionFunc(func(o *options) { o.ttl = d })
}

// WithPrefix sets the etcd key prefix under which elections keep their
// candidates (default DefaultPrefix). Candidates of one election must use
// the same prefix. A missing trailing '/' is added.
func WithPrefix(p string) Option {
	return optionFunc(func(o *options) { o.prefix = p })
}

// WithValue sets the value Run campaigns with: what Leader and Observe
// report to everyone while this candidate leads, typically its address or
// identity. The default is "<hostname>/<pid>". Campaign takes its value
// as an argument instead.
func WithValue(v string) Option {
	return optionFunc(func(o *options) { o.value = v })
}

// WithLogger sets the logger. The default discards everything. The
// Election logs at warn level when etcd raises the TTL, a term is lost or
// Run retries a failed campaign, and at debug level for wins and
// resignations.
func WithLogger(lg *zap.Logger) Option {
	return optionFunc(func(o *options) { o.logger = lg })
}

// WithMetrics sets where the Election reports wins, terms and failures.
// The default reports nowhere.
func WithMetrics(m Metrics) Option {
	return optionFunc(func(o *options) { o.metrics = m })
}
